package unmeshed

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

var (
	t0      = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	created = t0.Add(-time.Minute)
)

// apiPod is a running meshed pod (sidecar injected) of the default namespace.
func apiPod(mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "uid-1",
			CreationTimestamp: metav1.NewTime(created),
			OwnerReferences:   []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web"}}},
		Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy", Args: []string{"proxy", "sidecar"}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(t0)}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func entry(t *testing.T, p *corev1.Pod) *podcache.Entry {
	t.Helper()
	e, err := podcache.Reduce(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func rec(uid, decision string, at time.Time) sandbox.Entry {
	return sandbox.Entry{Path: "/r/c.json", Record: sandbox.Record{Version: 1, ContainerID: "c" + uid, Netns: "/var/run/netns/x",
		Namespace: "default", Name: "web-1", UID: uid, Decision: decision, Reason: "why " + decision, Time: at}}
}

func testConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni","installerNamespace":"mesh-cni-system","installerPodPrefix":"mesh-cni-node-"` + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecide(t *testing.T) {
	cfg := testConfig(t, "")
	redirected := rec("uid-1", "redirected", t0.Add(-time.Second))
	corrupt := sandbox.Entry{Path: "/r/bad.json", Err: errors.New("corrupt record")}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		records  []sandbox.Entry
		cfg      *config.Config
		unmeshed bool
		reason   string
	}{
		{"redirected by ADD", apiPod(), []sandbox.Entry{redirected}, nil, false, "redirected by the plug-in's ADD"},
		{"no record: started before mesh-cni", apiPod(), nil, nil, true, "no ADD record"},
		{"ADD decided not-redirected, qualifies now", apiPod(), []sandbox.Entry{rec("uid-1", "not-redirected", t0)}, nil, true, "decided not-redirected: why not-redirected"},
		{"ADD bypassed under Alert", apiPod(), []sandbox.Entry{rec("uid-1", "bypassed", t0)}, nil, true, "decided bypassed"},
		{"the newest record decides", apiPod(), []sandbox.Entry{rec("uid-1", "bypassed", t0.Add(-time.Hour)), redirected}, nil, false, "redirected"},
		{"a record of an earlier pod of the same name (other UID)", apiPod(), []sandbox.Entry{rec("uid-0", "redirected", t0.Add(-time.Hour))}, nil, true, "no ADD record"},
		{"record without UID, written after the pod was created", apiPod(), []sandbox.Entry{rec("", "redirected", t0)}, nil, false, "redirected"},
		{"record without UID, older than the pod: an earlier pod's", apiPod(), []sandbox.Entry{rec("", "redirected", created.Add(-time.Second))}, nil, true, "no ADD record"},
		{"corrupt record beside none: never taken as the pod's, never fatal", apiPod(), []sandbox.Entry{corrupt}, nil, true, "no ADD record"},
		{"corrupt record beside the pod's", apiPod(), []sandbox.Entry{corrupt, redirected}, nil, false, "redirected"},
		{"Pending without IP: ADD in progress", apiPod(func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
		}), nil, nil, false, "no pod IP yet"},
		{"Pending with IP (init containers run): its sandbox has its network", apiPod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
		}), nil, nil, true, "no ADD record"},
		{"hostNetwork", apiPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), nil, nil, false, "hostNetwork"},
		{"being deleted", apiPod(func(p *corev1.Pod) { now := metav1.NewTime(t0); p.DeletionTimestamp = &now }), nil, nil, false, "being deleted"},
		{"Job pod finished", apiPod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), nil, nil, false, "phase Succeeded"},
		{"no sidecar: does not qualify", apiPod(func(p *corev1.Pod) { p.Spec.Containers = p.Spec.Containers[:1] }), nil, nil, false, "does not qualify"},
		{"injection disabled", apiPod(func(p *corev1.Pod) {
			p.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
		}), nil, nil, false, "injection disabled"},
		{"excluded namespace", apiPod(func(p *corev1.Pod) { p.Namespace = "kube-system" }), nil, nil, false, "excluded"},
		{"the installer's own pod", apiPod(func(p *corev1.Pod) { p.Namespace, p.Name = "mesh-cni-system", "mesh-cni-node-x7" }), nil, nil, false, "installer"},
		{"no records kept by the plug-in: cannot tell, not acted on", apiPod(), nil, testConfig(t, `,"sandboxDir":""`), false, "sandboxDir empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = tc.cfg
			}
			v := Decide(entry(t, tc.pod), c, tc.records)
			if v.Unmeshed != tc.unmeshed || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("got unmeshed=%v %q, want %v and %q", v.Unmeshed, v.Reason, tc.unmeshed, tc.reason)
			}
			if v.Unmeshed && v.Sandbox == "" {
				t.Fatal("an unmeshed verdict names no sandbox")
			}
		})
	}
}

// A record written just before the watch event is seen: Decide reads
// the records it is given, and a redirected record of this UID wins even
// if the pod looks freshly running.
func TestRecordBeforeWatchEvent(t *testing.T) {
	p := apiPod(func(p *corev1.Pod) {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Millisecond))
	})
	if v := Decide(entry(t, p), testConfig(t, ""), []sandbox.Entry{rec("uid-1", "redirected", t0)}); v.Unmeshed {
		t.Fatalf("unmeshed: %q", v.Reason)
	}
}

// A new sandbox of the same pod (the kubelet recreated it) is another key.
func TestSandboxKey(t *testing.T) {
	a := SandboxKey(entry(t, apiPod()))
	b := SandboxKey(entry(t, apiPod(func(p *corev1.Pod) {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Minute))
	})))
	c := SandboxKey(entry(t, apiPod(func(p *corev1.Pod) { p.UID = types.UID("uid-2") })))
	d := SandboxKey(entry(t, apiPod(func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.9"}} })))
	if a == b || a == c || a == d {
		t.Fatalf("keys collide: %s %s %s %s", a, b, c, d)
	}
	if a != SandboxKey(entry(t, apiPod(func(p *corev1.Pod) { p.Labels = map[string]string{"x": "y"} }))) {
		t.Fatal("a label changed the sandbox key")
	}
}

func TestStale(t *testing.T) {
	now := t0.Add(time.Hour)
	grace := 2 * time.Minute
	live := entry(t, apiPod())
	gone := rec("uid-gone", "redirected", now.Add(-time.Hour))
	fresh := rec("uid-new", "redirected", now.Add(-time.Second)) // ADD just ran; the watch has not delivered the pod
	mine := rec("uid-1", "redirected", now.Add(-time.Hour))
	noUIDLive := rec("", "redirected", now.Add(-time.Hour))
	noUIDGone := rec("", "redirected", now.Add(-time.Hour))
	noUIDGone.Record.Name = "web-0"
	bad := sandbox.Entry{Path: "/r/bad.json", Err: errors.New("corrupt")}
	got := Stale([]sandbox.Entry{gone, fresh, mine, noUIDLive, noUIDGone, bad}, []*podcache.Entry{live}, now, grace)
	var names []string
	for _, r := range got {
		names = append(names, r.UID+"|"+r.Name)
	}
	if strings.Join(names, ",") != "uid-gone|web-1,|web-0" {
		t.Fatalf("stale = %v", names)
	}
}
