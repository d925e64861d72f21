package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/plugin"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestHugeBadAnnotation: a bad annotation value near the API's 256 KiB
// limit gets a CNI error of a few KiB that names the pod and the
// annotation and shows the value's head once; nothing is programmed.
func TestHugeBadAnnotation(t *testing.T) {
	// Values whose every 200-byte run is unique, so counting the head
	// counts the echoes.
	ports := make([]string, 0, 40000)
	for i := 1; len(ports) < cap(ports); i++ {
		ports = append(ports, strconv.Itoa(i%65535+1))
	}
	noise := sha256.Sum256([]byte("seed"))
	var item strings.Builder
	for item.Len() < 200000 {
		noise = sha256.Sum256(noise[:])
		item.WriteString(hex.EncodeToString(noise[:]))
	}
	values := map[string]string{
		"empty-item":   strings.Join(ports, ",") + ",",
		"one-bad-item": item.String(),
	}
	var pods []*cnitestPod
	for name, v := range values {
		pods = append(pods, &cnitestPod{name: "huge-" + name, value: v})
	}
	e := newEnv(t, "1.0.0", map[string]any{"iptablesBackend": "nft"})
	for _, hp := range pods {
		t.Run(hp.name, func(t *testing.T) {
			e.srv.Put(cnitest.SeedPod("default", hp.name, map[string]string{redirect.AnnoExcludeInboundPorts: hp.value}))
			p := e.pod("default", hp.name)
			_, err := e.chain.Add(p)
			cerr := cniError(t, err)
			if cerr.Code != plugin.CodeBadAnnotation {
				t.Fatalf("code %d: %.500s", cerr.Code, cerr.Msg)
			}
			if n := len(cerr.Msg) + len(cerr.Details); n > 4200 {
				t.Errorf("the CNI error is %d bytes", n)
			}
			if !strings.Contains(cerr.Msg, "default/"+hp.name) || !strings.Contains(cerr.Msg, redirect.AnnoExcludeInboundPorts) {
				t.Errorf("the error does not name the pod and the annotation: %.400s", cerr.Msg)
			}
			if n := strings.Count(cerr.Msg, hp.value[:200]); n != 1 {
				t.Errorf("the value is echoed %d times", n)
			}
			if c := istioChains(t, p, nat.NFT); len(c) > 0 {
				t.Errorf("a rejected pod got %v", c)
			}
		})
	}
}

type cnitestPod struct{ name, value string }
