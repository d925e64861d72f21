package unmeshed

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// FuzzDecide: any pod the API could serve and any record content: Decide
// never panics, an unmeshed verdict always names its sandbox and reason,
// and a readable redirected record of the pod's UID always means meshed.
func FuzzDecide(f *testing.F) {
	seed, _ := json.Marshal(apiPod())
	rec, _ := json.Marshal(sandbox.Record{Version: 1, ContainerID: "c1", Netns: "/n", Namespace: "default", Name: "web-1",
		UID: "uid-1", Decision: "redirected", Time: t0})
	f.Add(seed, rec)
	f.Add(seed, []byte(`{"v":1,"uid":"uid-1","decision":"bypassed"}`))
	f.Add([]byte(`{"metadata":{"namespace":"kube-system"}}`), []byte(`garbage`))
	cfg := testConfig(f, "")
	f.Fuzz(func(t *testing.T, podJSON, recJSON []byte) {
		var p corev1.Pod
		if json.Unmarshal(podJSON, &p) != nil {
			return
		}
		e, err := podcache.Reduce(&p)
		if err != nil {
			return
		}
		var r sandbox.Record
		entries := []sandbox.Entry{}
		if json.Unmarshal(recJSON, &r) == nil {
			entries = append(entries, sandbox.Entry{Record: r})
		}
		v := Decide(e, cfg, entries)
		if v.Unmeshed && (v.Sandbox == "" || v.Reason == "") {
			t.Fatalf("unmeshed without sandbox or reason: %+v", v)
		}
		if v.Reason == "" {
			t.Fatal("no reason")
		}
		if v.Unmeshed && r.UID != "" && r.UID == string(e.UID) && r.Decision == agentapi.DecisionRedirected &&
			!strings.Contains(v.Reason, "decided") {
			t.Fatalf("a redirected record of the pod ignored: %+v", v)
		}
		_ = Stale(entries, []*podcache.Entry{e}, time.Now(), time.Minute)
	})
}
