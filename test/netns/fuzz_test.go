package netns

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	vnetns "github.com/vishvananda/netns"
)

var fuzzFields = []string{
	redirect.AnnoIncludeInboundPorts, redirect.AnnoExcludeInboundPorts,
	redirect.AnnoIncludeOutboundIPRanges, redirect.AnnoExcludeOutboundIPRanges,
	redirect.AnnoIncludeOutboundPorts, redirect.AnnoExcludeOutboundPorts,
	redirect.AnnoExcludeInterfaces,
}

// FuzzKernelApplyVerify is the property behind ADD and CHECK, in the
// kernel: for any accepted annotation set, the rendered rules are accepted
// by iptables-restore, and CHECK (Verify) agrees right after ADD (Apply) —
// on a netns holding the previous input's rules (a re-ADD with changed
// settings) and on a clean one. One netns per fuzz process, per backend.
func FuzzKernelApplyVerify(f *testing.F) {
	for _, c := range redirecttest.Cases {
		args := make([]string, len(fuzzFields))
		for j, k := range fuzzFields {
			args[j] = c.Annotations[k]
		}
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], c.Name == "seed")
	}
	for _, a := range awkwardAnnotations {
		args := make([]string, len(fuzzFields))
		for j, k := range fuzzFields {
			args[j] = a[k]
		}
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], true)
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], false)
	}
	// Fuzz workers are killed, not stopped, so nothing may need cleaning:
	// the netns is anonymous, held by an open file of this process, and
	// dies with it. (Cleanup still closes it when the process ends well.)
	netns := map[nat.Backend]string{}
	var closers []func()
	f.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	node := redirect.DefaultNode()
	f.Fuzz(func(t *testing.T, a0, a1, a2, a3, a4, a5, a6 string, legacy bool) {
		annotations := map[string]string{}
		for i, v := range []string{a0, a1, a2, a3, a4, a5, a6} {
			if v != "" {
				annotations[fuzzFields[i]] = v
			}
		}
		s, err := node.Resolve(annotations, redirect.Proxy{UID: 1337, GID: 1337})
		if err != nil {
			return // rejected: the plug-in programs nothing (pkg/plugin tests)
		}
		b := nat.NFT
		if legacy {
			b = nat.Legacy
		}
		if netns[b] == "" {
			path, closeNS, err := anonymousNetns()
			if err != nil {
				t.Fatal(err)
			}
			netns[b], closers = path, append(closers, closeNS)
		}
		tb := &nat.Netns{Path: netns[b], Backend: b, LockWait: 5e9}
		for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
			rs := redirect.Build(s, fam)
			// Over whatever the previous input left: a re-ADD.
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatalf("%s %s: re-ADD: %v", b, fam, err)
			}
			if err := redirect.Verify(tb, rs); err != nil {
				t.Fatalf("%s %s: CHECK right after re-ADD: %v", b, fam, err)
			}
			// On a clean table: the fresh ADD every new pod takes.
			if err := redirect.Cleanup(tb, fam); err != nil {
				t.Fatal(err)
			}
			if saved, err := tb.Save(fam); err != nil || strings.Contains(saved, "ISTIO_") {
				t.Fatalf("%s %s: cleanup left %v\n%s", b, fam, err, saved)
			}
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatalf("%s %s: ADD: %v", b, fam, err)
			}
			if err := redirect.Verify(tb, rs); err != nil {
				t.Fatalf("%s %s: CHECK right after ADD: %v", b, fam, err)
			}
		}
	})
}

// anonymousNetns creates a network namespace with no name and no bind
// mount: only the returned path (an open file of this process) refers to
// it, so it goes away when the process exits, however it exits.
func anonymousNetns() (path string, closeNS func(), err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return "", nil, err
	}
	defer orig.Close()
	h, err := vnetns.New() // this thread is now in the new netns
	if err != nil {
		return "", nil, err
	}
	if err := vnetns.Set(orig); err != nil {
		h.Close()
		// The thread is stuck in the new netns: never hand it back.
		runtime.LockOSThread()
		return "", nil, err
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(h)), func() { h.Close() }, nil
}
