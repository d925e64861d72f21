package netns

import (
	"testing"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// BenchmarkApplyFresh is the ADD every new pod takes, one family: the
// netns lock, the fresh restore and the read-back that proves it. Creating
// and deleting the netns is not timed.
func BenchmarkApplyFresh(b *testing.B) {
	s, err := redirect.DefaultNode().Resolve(redirecttest.SeedAnnotations, redirect.Proxy{UID: 1337, GID: 1337})
	if err != nil {
		b.Fatal(err)
	}
	rs := redirect.Build(s, redirect.IPv4)
	for _, backend := range backends {
		b.Run(string(backend), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				n, err := cnitest.NewNetns("mcni-bench")
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				err = redirect.Apply(tablesFor(n, backend), rs)
				b.StopTimer()
				n.Delete()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
