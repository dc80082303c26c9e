package haproxyconf

import (
	"sync"
	"testing"
)

// TestRenderConcurrently: renders run at once in one process (the sidecar's
// loop and its background check); with -race this fails if the parser's
// shared state is not serialized.
func TestRenderConcurrently(t *testing.T) {
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	want, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				got, err := Render(spec, Options{})
				if err != nil || string(got.Config) != string(want.Config) {
					t.Errorf("concurrent render differs: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
