package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// readmeBlocks is the README's ```sh blocks under the heading, as written.
func readmeBlocks(t *testing.T, heading string) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	in, inBlock := false, false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## "+heading
		case in && line == "```sh":
			inBlock = true
			blocks = append(blocks, nil)
		case in && inBlock && line == "```":
			inBlock = false
		case in && inBlock:
			blocks[len(blocks)-1] = append(blocks[len(blocks)-1], line)
		}
	}
	return blocks
}

// TestReadmeTwoCommands runs the README's first command and its example
// (section "Two commands") as written, so that the README cannot drift
// from what works: `go run ./cmd/trackrouter --demo` from the repository
// (with --demo-dir added: a directory of the test's own), then the curl
// loop it shows, whose answers must be the shares its comment says.
func TestReadmeTwoCommands(t *testing.T) {
	haproxytest.Binary(t)
	blocks := readmeBlocks(t, "Two commands")
	if len(blocks) < 2 {
		t.Fatalf("the README's Two commands section has %d sh blocks, want the commands and the example", len(blocks))
	}
	var demo string
	for _, line := range blocks[0] {
		if strings.HasPrefix(line, "go run ./cmd/trackrouter --demo") {
			demo = strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
		}
	}
	if demo == "" || !strings.Contains(strings.Join(blocks[0], "\n"), "make test") {
		t.Fatalf("the README's commands are not the demo and make test:\n%s", strings.Join(blocks[0], "\n"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+demo+" --demo-dir "+t.TempDir())
	cmd.Dir = "../.."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
	}()
	// The demo says where HAProxy listens (8080, or a free port when
	// 8080 is taken) and when it applied the spec.
	bind := regexp.MustCompile(`HAProxy on (127\.0\.0\.1:\d+)`)
	addr, ready := "", false
	sc := bufio.NewScanner(out)
	var log strings.Builder
	for !ready && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := bind.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
		ready = strings.Contains(sc.Text(), "msg=applied")
	}
	if addr == "" || !ready {
		t.Fatalf("the demo did not start:\n%s", log.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	loop := strings.ReplaceAll(blocks[1][0], "127.0.0.1:8080", addr)
	got, err := exec.Command("sh", "-c", loop).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", loop, err, got)
	}
	// The README's comments under the loop are its expected output.
	want := strings.Join(blocks[1][1:3], "\n")
	for _, w := range []string{"5 track=canary version=v1.17.0", "95 track=production version=v1.15.0"} {
		if !strings.Contains(want, w) {
			t.Fatalf("the README's expected output no longer says %q:\n%s", w, want)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(got)), " "), w) {
			t.Errorf("%s\ngave:\n%s\nwant %q, as the README says", loop, got, w)
		}
	}
}
