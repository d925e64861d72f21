package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config/configtest"
	"github.com/meshcni/mesh-cni/pkg/k8s"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// fakeAgent answers GetPod with pod/err and records what it was sent.
type fakeAgent struct {
	pod     *pod.Pod
	uid     string
	err     error
	asked   []agentapi.PodRequest
	reports []*agentapi.Report
}

func (a *fakeAgent) GetPod(_ context.Context, req agentapi.PodRequest) (*pod.Pod, string, error) {
	a.asked = append(a.asked, req)
	return a.pod, a.uid, a.err
}

func (a *fakeAgent) Report(_ context.Context, r *agentapi.Report) error {
	a.reports = append(a.reports, r)
	return nil
}
func (a *fakeAgent) Close() {}

type countingGetter struct {
	pod  *pod.Pod
	err  error
	gets int
}

func (g *countingGetter) GetPod(context.Context, string, string) (*pod.Pod, error) {
	g.gets++
	return g.pod, g.err
}

type memTables struct{ restores int }

func (m *memTables) Save(redirect.Family) (string, error)  { return "", nil }
func (m *memTables) Restore(redirect.Family, string) error { m.restores++; return nil }

// Interleaved: nothing else writes these tables, so a fresh restore needs
// no read-back.
func (m *memTables) Interleaved() bool { return false }

func sidecarPod(annotations map[string]string) *pod.Pod {
	return &pod.Pod{
		Kind: "Pod", APIVersion: "v1",
		Metadata: pod.Metadata{Namespace: "ns", Name: "p", UID: "u1", Annotations: annotations},
		Spec:     pod.Spec{Containers: []pod.Container{{Name: "app"}, {Name: "istio-proxy"}}},
	}
}

type rig struct {
	p      *Plugin
	agent  *fakeAgent
	getter *countingGetter
	tables *memTables
	dials  int
}

func newRig(agent *fakeAgent, getter *countingGetter) *rig {
	r := &rig{agent: agent, getter: getter, tables: &memTables{}}
	r.p = &Plugin{Deps{
		NewPodGetter:   func(string, time.Duration) (k8s.PodGetter, error) { return getter, nil },
		NewTables:      func(string, nat.Backend) redirect.Tables { return r.tables },
		ResolveBackend: func(nat.Backend) (nat.Backend, error) { return nat.Legacy, nil },
		Agent:          func(string) AgentClient { r.dials++; return agent },
	}}
	return r
}

func addArgs(extra, cniArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{
		// The test's own netns: enterable, and memTables never touches it.
		ContainerID: "c1", Netns: "/proc/self/ns/net", IfName: "eth0", Args: cniArgs,
		StdinData: []byte(configtest.Conf("1.0.0", `,"kubeconfig":"/k","sandboxDir":"","podLookupTimeout":"1s","prevResult":`+configtest.PrevResult("1.0.0")+extra)),
	}
}

const podArgs = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u1"

// With the agent answering, the ADD is programmed without any API request,
// and the report says so.
func TestAddServedByAgentMakesNoGET(t *testing.T) {
	r := newRig(&fakeAgent{pod: sidecarPod(nil), uid: "u1"}, &countingGetter{})
	if _, err := r.p.AddResult(addArgs("", podArgs)); err != nil {
		t.Fatal(err)
	}
	if r.getter.gets != 0 || r.tables.restores != 1 {
		t.Fatalf("gets %d restores %d", r.getter.gets, r.tables.restores)
	}
	if len(r.agent.asked) != 1 || r.agent.asked[0].UID != "u1" || r.agent.asked[0].WaitMillis <= 0 {
		t.Fatalf("asked %+v", r.agent.asked)
	}
	rep := r.agent.reports[0]
	if rep.Decision != agentapi.DecisionRedirected || rep.Source != agentapi.SourceCache || rep.UID != "u1" ||
		rep.Verb != "ADD" || rep.ContainerID != "c1" || len(rep.Records) == 0 {
		t.Fatalf("report %+v", rep)
	}
}

// Every way the agent can fail ends in today's GET, never in an ADD error.
func TestAgentFailureFallsBackToGET(t *testing.T) {
	for _, aerr := range []error{
		errors.New("dial unix /var/run/mesh-cni/agent.sock: connect: no such file or directory"),
		context.DeadlineExceeded,
		errors.New("agent answered miss"),
	} {
		r := newRig(&fakeAgent{err: aerr}, &countingGetter{pod: sidecarPod(nil)})
		if _, err := r.p.AddResult(addArgs("", podArgs)); err != nil {
			t.Fatalf("%v: ADD failed: %v", aerr, err)
		}
		if r.getter.gets != 1 || r.tables.restores != 1 {
			t.Fatalf("%v: gets %d restores %d", aerr, r.getter.gets, r.tables.restores)
		}
		if rep := r.agent.reports[0]; rep.Source != agentapi.SourceAPI || rep.Decision != agentapi.DecisionRedirected {
			t.Fatalf("report %+v", rep)
		}
	}
}

// The fallback keeps today's failurePolicy: Block refuses, Alert bypasses.
func TestFallbackKeepsFailurePolicy(t *testing.T) {
	unreachable := &countingGetter{err: errors.New("connection refused")}
	r := newRig(&fakeAgent{err: errors.New("no agent")}, unreachable)
	_, err := r.p.AddResult(addArgs("", podArgs))
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater {
		t.Fatalf("Block: %v", err)
	}
	if rep := r.agent.reports[0]; rep.Decision != agentapi.DecisionRefused || rep.Cause != agentapi.CauseAPIUnreachable {
		t.Fatalf("Block report %+v", rep)
	}
	r = newRig(&fakeAgent{err: errors.New("no agent")}, &countingGetter{err: errors.New("connection refused")})
	if _, err := r.p.AddResult(addArgs(`,"failurePolicy":"Alert"`, podArgs)); err != nil {
		t.Fatalf("Alert: %v", err)
	}
	if rep := r.agent.reports[0]; rep.Decision != agentapi.DecisionBypassed || r.tables.restores != 0 {
		t.Fatalf("Alert report %+v", rep)
	}
}

func TestNoAgentWhenSocketEmpty(t *testing.T) {
	r := newRig(&fakeAgent{}, &countingGetter{pod: sidecarPod(nil)})
	if _, err := r.p.AddResult(addArgs(`,"agentSocket":""`, podArgs)); err != nil {
		t.Fatal(err)
	}
	if r.dials != 0 || r.getter.gets != 1 {
		t.Fatalf("dials %d gets %d", r.dials, r.getter.gets)
	}
}

// A bad annotation is refused and the report names the annotation.
func TestReportNamesBadAnnotation(t *testing.T) {
	anno := redirect.AnnoExcludeOutboundIPRanges
	r := newRig(&fakeAgent{pod: sidecarPod(map[string]string{anno: "not-a-cidr"}), uid: "u1"}, &countingGetter{})
	_, err := r.p.AddResult(addArgs("", podArgs))
	if err == nil || r.tables.restores != 0 {
		t.Fatalf("bad annotation accepted: %v", err)
	}
	rep := r.agent.reports[0]
	if rep.Decision != agentapi.DecisionRefused || rep.Annotation != anno || !strings.Contains(rep.Reason, anno) {
		t.Fatalf("report %+v", rep)
	}
}

// A huge bad annotation reaches the agent (its log line and Event) bounded
// as the CNI error is, still naming the annotation.
func TestReportBoundsHugeBadAnnotation(t *testing.T) {
	anno := redirect.AnnoExcludeOutboundIPRanges
	huge := strings.Repeat("x", 200<<10)
	r := newRig(&fakeAgent{pod: sidecarPod(map[string]string{anno: huge}), uid: "u1"}, &countingGetter{})
	if _, err := r.p.AddResult(addArgs("", podArgs)); err == nil {
		t.Fatal("bad annotation accepted")
	}
	rep := r.agent.reports[0]
	if len(rep.Reason) > maxMessage || rep.Annotation != anno || strings.Count(rep.Reason, "xxxxxxxx") == 0 {
		t.Fatalf("report reason of %d bytes (max %d), annotation %q", len(rep.Reason), maxMessage, rep.Annotation)
	}
}

// Excluded namespaces are decided before any lookup: no agent request.
func TestExcludedNamespaceAsksNobody(t *testing.T) {
	r := newRig(&fakeAgent{}, &countingGetter{})
	if _, err := r.p.AddResult(addArgs("", "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=x")); err != nil {
		t.Fatal(err)
	}
	if len(r.agent.asked) != 0 || r.getter.gets != 0 {
		t.Fatal("looked up an excluded pod")
	}
	if rep := r.agent.reports[0]; rep.Decision != agentapi.DecisionNotRedirected || rep.Source != agentapi.SourceNone {
		t.Fatalf("report %+v", rep)
	}
}
