package agent

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
)

// Event reasons (the Event's `reason` field).
const (
	ReasonRedirected     = "Redirected"
	ReasonBadAnnotation  = "BadAnnotation"
	ReasonBypassed       = "RedirectBypassed"
	ReasonAPIUnreachable = "PodLookupFailed"
)

// dedupWindow: the same Warning for the same pod is posted once per window
// (a Block pod the API cannot resolve is retried by the kubelet every few
// seconds).
const dedupWindow = 10 * time.Minute

// eventPoster posts Events asynchronously: Post never blocks, client-go's
// broadcaster does the API calls (create, and patch for repeats it
// aggregates) in the background, a token bucket caps the rate.
type eventPoster struct {
	rec      record.EventRecorder
	b        record.EventBroadcaster
	limit    *rate.Limiter
	m        *metrics
	mu       sync.Mutex
	lastSeen map[string]time.Time
}

// countingSink counts what the API server accepted and refused.
type countingSink struct {
	sink record.EventSink
	m    *metrics
}

func (s countingSink) count(ev *corev1.Event, err error) {
	result := "posted"
	if err != nil {
		result = "failed"
	}
	s.m.events.WithLabelValues(ev.Reason, result).Inc()
}

func (s countingSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	out, err := s.sink.Create(ev)
	s.count(ev, err)
	return out, err
}

func (s countingSink) Update(ev *corev1.Event) (*corev1.Event, error) {
	out, err := s.sink.Update(ev)
	s.count(ev, err)
	return out, err
}

func (s countingSink) Patch(ev *corev1.Event, data []byte) (*corev1.Event, error) {
	out, err := s.sink.Patch(ev, data)
	s.count(ev, err)
	return out, err
}

func newEventPoster(events typedcorev1.EventsGetter, cfg *Config, m *metrics) *eventPoster {
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{}))
	b.StartRecordingToSink(countingSink{sink: &typedcorev1.EventSinkImpl{Interface: events.Events("")}, m: m})
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	return &eventPoster{
		rec:      b.NewRecorder(scheme, corev1.EventSource{Component: "mesh-cni", Host: cfg.NodeName}),
		b:        b,
		limit:    rate.NewLimiter(rate.Limit(cfg.EventQPS), cfg.EventBurst),
		m:        m,
		lastSeen: map[string]time.Time{},
	}
}

func (p *eventPoster) stop() { p.b.Shutdown() }

// event is one Event to post about a pod.
type event struct {
	kind, reason, message string
	dedup                 bool // once per pod and reason per dedupWindow
}

// eventFor is the Event a report calls for, if any: a pure decision.
func eventFor(r *agentapi.Report, redirectedEvents bool) (event, bool) {
	if r.Namespace == "" || r.Name == "" || r.Verb != "ADD" {
		return event{}, false
	}
	switch {
	case r.Decision == agentapi.DecisionRefused && r.Annotation != "":
		return event{corev1.EventTypeWarning, ReasonBadAnnotation,
			fmt.Sprintf("mesh-cni refused the pod: annotation %s is invalid: %s", r.Annotation, r.Reason), true}, true
	case r.Decision == agentapi.DecisionRefused && r.Cause == agentapi.CauseAPIUnreachable:
		return event{corev1.EventTypeWarning, ReasonAPIUnreachable,
			"mesh-cni could not read the pod from the Kubernetes API; failurePolicy Block holds the pod until it can: " + r.Reason, true}, true
	case r.Decision == agentapi.DecisionBypassed:
		return event{corev1.EventTypeWarning, ReasonBypassed,
			"POD STARTED WITHOUT MESH REDIRECT (failurePolicy Alert): " + r.Reason, true}, true
	case r.Decision == agentapi.DecisionRedirected && redirectedEvents:
		return event{corev1.EventTypeNormal, ReasonRedirected, "mesh-cni programmed the traffic redirect to the sidecar: " + r.Reason, false}, true
	}
	return event{}, false
}

// post queues ev about the pod; it never blocks.
func (p *eventPoster) post(r *agentapi.Report, ev event) {
	if ev.dedup && p.duplicate(r.Namespace+"/"+r.Name+"/"+r.UID+"/"+ev.reason) {
		p.m.events.WithLabelValues(ev.reason, "suppressed").Inc()
		return
	}
	if !p.limit.Allow() {
		p.m.events.WithLabelValues(ev.reason, "suppressed").Inc()
		return
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: r.Namespace, Name: r.Name, UID: types.UID(r.UID)}
	p.rec.Event(ref, ev.kind, ev.reason, ev.message)
}

func (p *eventPoster) duplicate(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if t, ok := p.lastSeen[key]; ok && now.Sub(t) < dedupWindow {
		return true
	}
	if len(p.lastSeen) > 4096 { // forget expired keys instead of growing
		for k, t := range p.lastSeen {
			if now.Sub(t) >= dedupWindow {
				delete(p.lastSeen, k)
			}
		}
		if len(p.lastSeen) > 4096 { // a flood of distinct pods: start over
			clear(p.lastSeen)
		}
	}
	p.lastSeen[key] = now
	return false
}
