package redirect_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestGolden(t *testing.T) {
	node := redirect.DefaultNode()
	for _, c := range redirecttest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			s, err := node.Resolve(c.Annotations, c.Proxy)
			if c.WantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.WantErr) {
					t.Fatalf("Resolve: err = %v, want one containing %q", err, c.WantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			for _, fam := range c.Families {
				got := redirecttest.Render(redirect.Build(s, fam))
				path := filepath.Join("testdata", redirecttest.Golden(c, fam))
				if *update {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./pkg/redirect -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from the rendering:\n--- golden\n%s\n--- got\n%s", path, want, got)
				}
			}
		})
	}
}

// TestSeedSpec holds the default rendering to the shared spec file itself,
// not to a golden file we could regenerate by mistake.
func TestSeedSpec(t *testing.T) {
	want, err := redirecttest.SeedRestore()
	if err != nil {
		t.Fatal(err)
	}
	s, err := redirect.DefaultNode().Resolve(redirecttest.SeedAnnotations, redirect.Proxy{UID: 1337, GID: 1337})
	if err != nil {
		t.Fatal(err)
	}
	if got := redirect.Render(redirect.Build(s, redirect.IPv4)); got != want {
		t.Fatalf("default rendering is not the seed's rules:\n--- seed\n%s\n--- got\n%s", want, got)
	}
}
