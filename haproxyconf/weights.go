package haproxyconf

// ServerKey names a server the way the Runtime API does: backend/server.
type ServerKey struct {
	Backend, Server string
}

func (k ServerKey) String() string { return k.Backend + "/" + k.Server }
