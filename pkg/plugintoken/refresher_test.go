package plugintoken

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
)

// scripted answers TokenRequests with what answer says for the n-th call
// (1-based), stamping the expiry from the fake clock as the API server
// would from its own.
type scripted struct {
	mu     sync.Mutex
	clock  *clocktesting.FakeClock
	answer func(n int) error // nil error: a token "tok-<n>"
	reqs   []*authenticationv1.TokenRequest
	names  []string
}

func (s *scripted) CreateToken(_ context.Context, name string, tr *authenticationv1.TokenRequest, _ metav1.CreateOptions) (*authenticationv1.TokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, tr.DeepCopy())
	s.names = append(s.names, name)
	n := len(s.reqs)
	if err := s.answer(n); err != nil {
		return nil, err
	}
	out := tr.DeepCopy()
	out.Status.Token = fmt.Sprintf("tok-%d", n)
	out.Status.ExpirationTimestamp = metav1.NewTime(s.clock.Now().Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

func (s *scripted) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.reqs) }

type rig struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	api   *scripted
	r     *Refresher
	reg   *prometheus.Registry
	logs  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func start(t *testing.T, answer func(n int) error) *rig {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &rig{t: t, clock: fc, api: &scripted{clock: fc, answer: answer}, reg: prometheus.NewRegistry(), logs: &syncBuf{}}
	var err error
	g.r, err = New(Config{Namespace: "mesh-cni-system", ServiceAccount: "mesh-cni-plugin", Expiry: time.Hour,
		BoundNode: "node-x", Clock: fc, Registry: g.reg,
		Logger: slog.New(slog.NewJSONHandler(g.logs, nil))}, g.api)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	g.settle()
	return g
}

// settle waits until Run is parked on its timer again.
func (g *rig) settle() {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !g.clock.HasWaiters() {
		if time.Now().After(deadline) {
			g.t.Fatal("refresher did not wait on its clock")
		}
		time.Sleep(time.Millisecond)
	}
}

// step moves the fake clock by d in one-second ticks (each due timer
// fires, as time would pass) and lets Run settle after each.
func (g *rig) step(d time.Duration) {
	g.t.Helper()
	for end := g.clock.Now().Add(d); g.clock.Now().Before(end); {
		g.clock.Step(time.Second)
		g.settle()
	}
}

func (g *rig) token() string {
	g.t.Helper()
	tok, err := g.r.Token()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(tok)
}

func drained(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRefreshAtEightyPercent(t *testing.T) {
	g := start(t, func(int) error { return nil })
	if got := g.token(); got != "tok-1" || !drained(g.r.Changed()) {
		t.Fatalf("first token %q (changed signalled: false)", got)
	}
	req := g.api.reqs[0]
	if g.api.names[0] != "mesh-cni-plugin" || *req.Spec.ExpirationSeconds != 3600 || len(req.Spec.Audiences) != 0 {
		t.Errorf("request %s %+v: want mesh-cni-plugin, 3600s, the API server's audience", g.api.names[0], req.Spec)
	}
	if b := req.Spec.BoundObjectRef; b == nil || b.Kind != "Node" || b.APIVersion != "v1" || b.Name != "node-x" || b.UID != "" {
		t.Errorf("bound object %+v, want the node by name", b)
	}
	g.step(48*time.Minute - time.Second)
	if g.api.calls() != 1 || g.token() != "tok-1" {
		t.Fatalf("renewed before 80%% of the lifetime: %d calls, token %q", g.api.calls(), g.token())
	}
	g.step(time.Second)
	if g.api.calls() != 2 || g.token() != "tok-2" || !drained(g.r.Changed()) {
		t.Fatalf("at 48m of 60m: %d calls, token %q; want tok-2 and a change signalled", g.api.calls(), g.token())
	}
	g.step(48 * time.Minute)
	if g.token() != "tok-3" {
		t.Fatalf("second renewal: %q", g.token())
	}
	if v := testutil.ToFloat64(g.r.m.requests.WithLabelValues("ok")); v != 3 {
		t.Errorf("ok requests %v", v)
	}
}

// TestRefreshFailureKeepsTokenUntilExpiry: renewals failing keep the
// previous token (with backoff) until it expires; then Token fails, the
// installer is told, logs and metrics say so; a later success recovers.
func TestRefreshFailureKeepsTokenUntilExpiry(t *testing.T) {
	var fail sync.Map
	g := start(t, func(n int) error {
		if _, ok := fail.Load("on"); ok {
			return errors.New("connection refused")
		}
		return nil
	})
	drained(g.r.Changed())
	fail.Store("on", true)
	g.step(48 * time.Minute)
	g.step(11 * time.Minute)
	if g.token() != "tok-1" {
		t.Fatalf("previous token not kept before expiry: %q", g.token())
	}
	// Backoff 1,2,4,8,16,32,60,60,...s over 11 min: about 16 attempts, not 660.
	if c := g.api.calls(); c < 10 || c > 25 {
		t.Errorf("%d requests in 11 min of failures; want backoff (about 16)", c)
	}
	if !strings.Contains(g.logs.String(), "keeping the previous token until it expires") {
		t.Errorf("failure log does not say the previous token is kept:\n%s", g.logs)
	}
	if drained(g.r.Changed()) {
		t.Error("change signalled while the token stayed the same")
	}
	g.step(time.Minute)
	if got := g.token(); !strings.Contains(got, "expired") {
		t.Fatalf("after expiry Token() = %q, want an error saying it expired", got)
	}
	if !drained(g.r.Changed()) {
		t.Error("expiry not signalled to the installer")
	}
	if testutil.ToFloat64(g.r.m.valid) != 0 || testutil.ToFloat64(g.r.m.requests.WithLabelValues("error")) == 0 {
		t.Error("metrics do not show the expired token and the failures")
	}
	if !strings.Contains(g.logs.String(), "token expired and could not be renewed") {
		t.Errorf("no expiry log line:\n%s", g.logs)
	}
	fail.Delete("on")
	g.step(time.Minute)
	if got := g.token(); !strings.HasPrefix(got, "tok-") || testutil.ToFloat64(g.r.m.valid) != 1 {
		t.Fatalf("no recovery after the API answered again: %q", got)
	}
}

// TestTokenRequestForbidden: RBAC refusing the TokenRequest leaves no
// token (the installer stays not ready), says which Role is missing, and is
// counted apart from other failures.
func TestTokenRequestForbidden(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, "mesh-cni-plugin", errors.New("RBAC: denied"))
	g := start(t, func(int) error { return forbidden })
	if got := g.token(); !strings.Contains(got, "no token") {
		t.Fatalf("Token() = %q, want no token", got)
	}
	g.step(3 * time.Second)
	if testutil.ToFloat64(g.r.m.requests.WithLabelValues("forbidden")) < 2 {
		t.Error("forbidden requests not counted or not retried")
	}
	if !strings.Contains(g.logs.String(), "role-plugin-token.yaml") {
		t.Errorf("log does not name the missing Role:\n%s", g.logs)
	}
}

func TestSchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := refreshAt(t0, t0.Add(time.Hour), 0.8); !got.Equal(t0.Add(48 * time.Minute)) {
		t.Errorf("refreshAt = %s", got)
	}
	if got := refreshAt(t0, t0.Add(-time.Second), 0.8); !got.Equal(t0) {
		t.Errorf("an already expired token must be replaced at once: %s", got)
	}
	var got []time.Duration
	for n := 1; n <= 9; n++ {
		got = append(got, backoff(n, time.Second, time.Minute))
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 16s 32s 1m0s 1m0s 1m0s]" {
		t.Errorf("backoff %v", got)
	}
	if w := nextWake(t0.Add(time.Minute), t0.Add(30*time.Second), t0); !w.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("wake for the expiry first: %s", w)
	}
	if w := nextWake(t0.Add(time.Minute), t0.Add(-time.Second), t0); !w.Equal(t0.Add(time.Minute)) {
		t.Errorf("an expiry in the past is no reason to wake: %s", w)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Namespace: "ns", ServiceAccount: "sa", Expiry: time.Hour}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Namespace = "" }, "Namespace"},
		{func(c *Config) { c.ServiceAccount = "" }, "ServiceAccount"},
		{func(c *Config) { c.Expiry = 5 * time.Minute }, "Expiry"},
		{func(c *Config) { c.RefreshFraction = 1 }, "RefreshFraction"},
		{func(c *Config) { c.MaxBackoff = time.Millisecond }, "backoff"},
	} {
		cfg := ok
		c.edit(&cfg)
		_, err := New(cfg, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %s, got %v", c.want, err)
		}
	}
	if _, err := New(ok, nil); err != nil {
		t.Error(err)
	}
}
