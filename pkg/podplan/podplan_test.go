package podplan

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

func TestFamilies(t *testing.T) {
	v4, both := []redirect.Family{redirect.IPv4}, []redirect.Family{redirect.IPv4, redirect.IPv6}
	for _, c := range []struct {
		ips  []string
		want []redirect.Family
	}{
		{nil, v4}, // no IPs: the seed's IPv4 rules, as ADD without a v6 address
		{[]string{"10.0.0.5"}, v4},
		{[]string{"::ffff:10.0.0.5"}, v4},
		{[]string{"10.0.0.5", "fd00::5"}, both},
		{[]string{"fd00::5"}, both},
	} {
		got, err := Families(c.ips)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Families(%v) = %v, %v; want %v", c.ips, got, err, c.want)
		}
	}
	if _, err := Families([]string{"10.0.0.5", "10.0.0.0/24"}); err == nil || !strings.Contains(err.Error(), "podIPs[1]") {
		t.Errorf("a prefix: %v; want an error naming podIPs[1]", err)
	}
}

func seedPod(annotations map[string]string) *pod.Pod {
	uid := int64(1337)
	return &pod.Pod{
		Metadata: pod.Metadata{Namespace: "default", Name: "productpage", Annotations: annotations},
		Spec: pod.Spec{Containers: []pod.Container{{Name: "app"},
			{Name: "istio-proxy", SecurityContext: &pod.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid}}}},
	}
}

func TestMake(t *testing.T) {
	cfg, err := config.Parse([]byte(`{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	fams := []redirect.Family{redirect.IPv4, redirect.IPv6}
	pl, err := Make(seedPod(nil), cfg, fams)
	if err != nil || !pl.Verdict.Redirect || len(pl.Rulesets) != 2 || pl.Rulesets[1].Family != redirect.IPv6 {
		t.Fatalf("Make(seed pod) = %+v, %v", pl, err)
	}
	noSidecar := seedPod(nil)
	noSidecar.Spec.Containers = noSidecar.Spec.Containers[:1]
	if pl, err := Make(noSidecar, cfg, fams); err != nil || pl.Verdict.Redirect || pl.Rulesets != nil {
		t.Fatalf("Make(no sidecar) = %+v, %v; want not redirected, no rules", pl, err)
	}
	bad := seedPod(map[string]string{redirect.AnnoExcludeOutboundIPRanges: "not-a-cidr"})
	if pl, err := Make(bad, cfg, fams); err == nil || pl.Rulesets != nil || !strings.Contains(err.Error(), redirect.AnnoExcludeOutboundIPRanges) {
		t.Fatalf("Make(bad annotation) = %+v, %v; want an error naming it and no rules", pl, err)
	}
}
