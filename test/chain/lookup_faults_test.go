package chain

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// podUID is the UID the runtime passes as K8S_POD_UID for every pod here.
const podUID = "6f1d2c3a-0000-4000-8000-00000000c0de"

// uidPod is the seed pod with the UID the runtime knows it by.
func uidPod(name string) *corev1.Pod {
	p := cnitest.SeedPod("default", name, redirecttest.SeedAnnotations)
	p.UID = types.UID(podUID)
	return p
}

// body is a pod as the API serves it, with the TypeMeta given.
func body(t *testing.T, p *corev1.Pod, kind, apiVersion string) []byte {
	t.Helper()
	p = p.DeepCopy()
	p.TypeMeta = metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apiFault is one way the API server fails to give the plug-in the pod.
type apiFault struct {
	name  string
	fault func(t *testing.T, podName string) *cnitest.Fault
	// down points the kubeconfig at a port nothing listens on.
	down bool
	// maxRequests, when set, bounds the requests the fault may draw.
	maxRequests int64
}

func apiFaults() []apiFault {
	status := func(code int, retryAfter string) func(*testing.T, string) *cnitest.Fault {
		return func(*testing.T, string) *cnitest.Fault { return &cnitest.Fault{Status: code, RetryAfter: retryAfter} }
	}
	answer := func(mk func(t *testing.T, podName string) []byte) func(*testing.T, string) *cnitest.Fault {
		return func(t *testing.T, n string) *cnitest.Fault { return &cnitest.Fault{Body: mk(t, n)} }
	}
	return []apiFault{
		{name: "connection-refused", down: true},
		{name: "slow-past-budget", fault: func(*testing.T, string) *cnitest.Fault { return &cnitest.Fault{Hang: true} }},
		{name: "401", fault: status(401, ""), maxRequests: 1},
		{name: "403", fault: status(403, ""), maxRequests: 1},
		// Retry-After: 1 in a 1s budget leaves room for two requests at
		// most; ignoring it, the backoff would make several.
		{name: "429-retry-after", fault: status(429, "1"), maxRequests: 2},
		{name: "500", fault: status(500, "")},
		{name: "503", fault: status(503, "")},
		{name: "200-empty-object", fault: answer(func(*testing.T, string) []byte { return []byte(`{}`) })},
		{name: "200-null", fault: answer(func(*testing.T, string) []byte { return []byte(`null`) })},
		{name: "200-another-pod", fault: answer(func(t *testing.T, _ string) []byte {
			return body(t, uidPod("someone-else"), "Pod", "v1")
		})},
		{name: "200-wrong-kind", fault: answer(func(t *testing.T, n string) []byte {
			return body(t, uidPod(n), "PodTemplate", "v1")
		})},
		{name: "200-wrong-apiVersion", fault: answer(func(t *testing.T, n string) []byte {
			return body(t, uidPod(n), "Pod", "v2")
		})},
		{name: "200-status-object", fault: answer(func(*testing.T, string) []byte {
			return []byte(`{"kind":"Status","apiVersion":"v1","status":"Success"}`)
		})},
		// Same namespace and name, another UID: the pod the runtime sets up
		// was deleted and recreated under its name.
		{name: "200-other-uid", fault: answer(func(t *testing.T, n string) []byte {
			p := uidPod(n)
			p.UID = "11111111-2222-4333-8444-555555555555"
			return body(t, p, "Pod", "v1")
		})},
	}
}

// TestAPIFaults: every way the API fails to give the pod is "the API could
// not answer". Block fails the ADD with a retryable error naming the pod;
// Alert lets the pod start and logs an ERROR naming it. Neither programs a
// rule from an answer that is not the pod.
func TestAPIFaults(t *testing.T) {
	for _, policy := range []string{"Block", "Alert"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, "1.0.0", map[string]any{"podLookupTimeout": "1s", "failurePolicy": policy, "iptablesBackend": "nft"})
			for _, f := range apiFaults() {
				t.Run(f.name, func(t *testing.T) {
					name := "pp-" + strings.ToLower(policy) + "-" + f.name
					e.srv.Put(uidPod(name))
					e.srv.Requests.Store(0)
					if f.fault != nil {
						e.srv.SetFault(f.fault(t, name))
						defer e.srv.SetFault(nil)
					}
					if f.down {
						e.pointKubeconfigAt("http://127.0.0.1:1")
						defer e.pointKubeconfigAt(e.srv.URL)
					}
					p := e.pod("default", name)
					p.UID = podUID
					_, err := e.chain.Add(p)
					e.assertUnavailable(t, policy, p, err)
					if f.maxRequests > 0 && e.srv.Requests.Load() > f.maxRequests {
						t.Errorf("%d API requests, want at most %d", e.srv.Requests.Load(), f.maxRequests)
					}
					if f.fault != nil && e.srv.Requests.Load() == 0 {
						t.Errorf("the fault was never met: no API request")
					}
				})
			}
			// The same server, behaving, with the UID the runtime gave: the
			// identity check accepts the pod asked for.
			t.Run("healthy", func(t *testing.T) {
				name := "pp-" + strings.ToLower(policy) + "-healthy"
				e.srv.Put(uidPod(name))
				p := e.pod("default", name)
				p.UID = podUID
				if _, err := e.chain.Add(p); err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if err := redirect.Verify(&nat.Netns{Path: p.Netns.Path(), Backend: nat.NFT}, seedRuleset(t)); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestTransientAPIFaultsRecover: an answer that is not the pod yet is asked
// again within the budget; when the API then serves the pod, the ADD
// programs it.
func TestTransientAPIFaultsRecover(t *testing.T) {
	e := newEnv(t, "1.0.0", map[string]any{"podLookupTimeout": "5s", "iptablesBackend": "nft"})
	for _, c := range []struct {
		name  string
		fault *cnitest.Fault
	}{
		{"429-retry-after", &cnitest.Fault{Status: 429, RetryAfter: "1", Times: 1}},
		{"503", &cnitest.Fault{Status: 503, Times: 2}},
		{"200-empty-object", &cnitest.Fault{Body: []byte(`{}`), Times: 1}},
		{"200-other-uid", &cnitest.Fault{Body: []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"default","name":"pp-recover-200-other-uid","uid":"old"}}`), Times: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "pp-recover-" + c.name
			e.srv.Put(uidPod(name))
			e.srv.SetFault(c.fault)
			defer e.srv.SetFault(nil)
			e.srv.Requests.Store(0)
			p := e.pod("default", name)
			p.UID = podUID
			if _, err := e.chain.Add(p); err != nil {
				t.Fatalf("ADD: %v\n%s", err, logText(t, e))
			}
			if n := e.srv.Requests.Load(); n != c.fault.Times+1 {
				t.Errorf("%d requests, want %d", n, c.fault.Times+1)
			}
			if err := redirect.Verify(&nat.Netns{Path: p.Netns.Path(), Backend: nat.NFT}, seedRuleset(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKubeconfigFaults: a kubeconfig that is missing or cannot be read is
// "the API could not answer" too, and costs no request.
func TestKubeconfigFaults(t *testing.T) {
	for _, policy := range []string{"Block", "Alert"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, "1.0.0", map[string]any{"podLookupTimeout": "1s", "failurePolicy": policy})
			for _, c := range []struct {
				name   string
				break_ func() error
			}{
				{"missing", func() error { return nil }}, // removed above
				{"directory", func() error { return os.Mkdir(e.kc, 0o700) }},
				{"not-yaml", func() error { return os.WriteFile(e.kc, []byte("\x00\x01 not: [a kubeconfig"), 0o600) }},
				{"empty", func() error { return os.WriteFile(e.kc, nil, 0o600) }},
				{"ca-file-missing", func() error {
					kc := strings.Replace(kubeconfigFor(e.srv.URL), "server: ", "certificate-authority: /nonexistent/ca.crt\n    server: ", 1)
					return os.WriteFile(e.kc, []byte(kc), 0o600)
				}},
			} {
				t.Run(c.name, func(t *testing.T) {
					_ = os.RemoveAll(e.kc)
					if err := c.break_(); err != nil {
						t.Fatal(err)
					}
					defer e.pointKubeconfigAt(e.srv.URL)
					name := "pp-" + strings.ToLower(policy) + "-kc-" + c.name
					e.srv.Put(uidPod(name))
					e.srv.Requests.Store(0)
					p := e.pod("default", name)
					_, err := e.chain.Add(p)
					e.assertUnavailable(t, policy, p, err)
					if err != nil && !strings.Contains(err.Error(), e.kc) {
						t.Errorf("the error does not name the kubeconfig %s: %v", e.kc, err)
					}
					if n := e.srv.Requests.Load(); n != 0 {
						t.Errorf("%d API requests", n)
					}
				})
			}
		})
	}
}

func kubeconfigFor(url string) string {
	dir, err := os.MkdirTemp("", "kc-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path, err := cnitest.WriteKubeconfig(dir, url)
	if err != nil {
		panic(err)
	}
	b, _ := os.ReadFile(path)
	return string(b)
}

// pointKubeconfigAt rewrites the env's kubeconfig for the server at url.
func (e *env) pointKubeconfigAt(url string) {
	e.t.Helper()
	_ = os.RemoveAll(e.kc)
	if _, err := cnitest.WriteKubeconfig(filepath.Dir(e.kc), url); err != nil {
		e.t.Fatal(err)
	}
}

// assertUnavailable checks the outcome the failure policy promises when the
// API could not answer: Block fails the ADD with code 11 naming the pod,
// Alert starts the pod and logs an ERROR naming it; neither programs rules.
func (e *env) assertUnavailable(t *testing.T, policy string, p cnitest.Pod, err error) {
	t.Helper()
	ref := p.Namespace + "/" + p.Name
	switch policy {
	case "Block":
		cerr := cniError(t, err)
		if cerr.Code != 11 || !strings.Contains(cerr.Msg, ref) || !strings.Contains(cerr.Msg, "failurePolicy Block") {
			t.Errorf("want a retryable error (11) naming %s and the policy, got %d: %s", ref, cerr.Code, cerr.Msg)
		}
	case "Alert":
		if err != nil {
			t.Fatalf("Alert must let the pod start: %v", err)
		}
		if !errorLogged(logText(t, e), ref) {
			t.Errorf("no ERROR line naming %s in the log", ref)
		}
	}
	if c := istioChains(t, p, nat.NFT); len(c) > 0 {
		t.Errorf("the pod got %v from an answer that is not its pod", c)
	}
	if c := istioChains(t, p, nat.Legacy); len(c) > 0 {
		t.Errorf("the pod got legacy %v from an answer that is not its pod", c)
	}
}

// errorLogged reports whether an ERROR line of the log names the pod.
func errorLogged(log, ref string) bool {
	for _, l := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["level"] == "ERROR" && rec["pod"] == ref &&
			strings.Contains(rec["msg"].(string), "WITHOUT MESH REDIRECT") {
			return true
		}
	}
	return false
}
