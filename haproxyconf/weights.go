package haproxyconf

import (
	"bufio"
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// ServerKey names a server the way the Runtime API does: backend/server.
type ServerKey struct {
	Backend, Server string
}

func (k ServerKey) String() string { return k.Backend + "/" + k.Server }

var weightRE = regexp.MustCompile(`(\sweight\s+)(\d+)`)

// ServerWeights returns the weight of every server line in a rendered
// config (servers without a weight have HAProxy's default, 1), and the
// config with every weight masked. Two configs whose masked forms are equal
// differ only in weights, which the Runtime API can change without a reload.
func ServerWeights(cfg []byte) (weights map[ServerKey]int, masked []byte) {
	weights = make(map[ServerKey]int)
	var out bytes.Buffer
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case line[0] != ' ' && line[0] != '\t':
			section = ""
			if (fields[0] == "backend" || fields[0] == "listen") && len(fields) > 1 {
				section = fields[1]
			}
		case section != "" && fields[0] == "server" && len(fields) > 2:
			w := 1
			if m := weightRE.FindStringSubmatch(line); m != nil {
				w, _ = strconv.Atoi(m[2])
				line = weightRE.ReplaceAllString(line, "${1}_")
			}
			weights[ServerKey{section, fields[1]}] = w
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return weights, out.Bytes()
}
