package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
)

// maxRecords bounds what one report writes to stdout.
const maxRecords = 64

// reporter turns the plug-in's reports into log lines, metrics and Events,
// in its own goroutine: the socket handler only queues.
type reporter struct {
	cfg    *Config
	out    io.Writer
	m      *metrics
	events *eventPoster // nil: no Events (no API)
	uidOf  func(namespace, name string) string
	log    *slog.Logger
}

func (r *reporter) run(reports <-chan *agentapi.Report) {
	for rep := range reports {
		r.handle(rep)
	}
}

func (r *reporter) handle(rep *agentapi.Report) {
	if rep.UID == "" && rep.Namespace != "" && r.uidOf != nil {
		rep.UID = r.uidOf(rep.Namespace, rep.Name)
	}
	r.writeLines(rep)
	cause := rep.Cause
	if cause == "" {
		cause = causeOf(rep.Decision, rep.Reason)
	}
	r.m.verbs.WithLabelValues(rep.Verb, rep.Decision, cause).Inc()
	if rep.Verb == "ADD" {
		r.m.addDuration.WithLabelValues(rep.Decision).Observe(float64(rep.DurationMicros) / 1e6)
	}
	if rep.Source != "" && rep.Verb != "DEL" {
		r.m.podSource.WithLabelValues(rep.Source).Inc()
	}
	if r.events != nil {
		if ev, ok := eventFor(rep, r.cfg.EventRedirected); ok {
			r.events.post(rep, ev)
		}
	}
}

// writeLines writes the plug-in's records (each re-encoded on one line, so
// a record cannot forge others) and then the decision line.
func (r *reporter) writeLines(rep *agentapi.Report) {
	var buf bytes.Buffer
	for i, rec := range rep.Records {
		if i == maxRecords {
			break
		}
		var obj map[string]any
		if json.Unmarshal(rec, &obj) != nil {
			continue
		}
		obj["source"] = "plugin"
		line, err := json.Marshal(obj)
		if err != nil {
			continue
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	pod := ""
	if rep.Namespace != "" {
		pod = rep.Namespace + "/" + rep.Name
	}
	line, _ := json.Marshal(decisionLine{
		Time: time.Now().UTC().Format(time.RFC3339Nano), Level: levelOf(rep.Decision), Msg: "decision",
		Pod: pod, UID: rep.UID, Verb: rep.Verb, ContainerID: rep.ContainerID, Decision: rep.Decision,
		Reason: rep.Reason, Annotation: rep.Annotation, PodSource: rep.Source,
		DurationMS: float64(rep.DurationMicros) / 1000,
	})
	buf.Write(line)
	buf.WriteByte('\n')
	if _, err := r.out.Write(buf.Bytes()); err != nil {
		r.log.Warn("cannot write decision log", "error", err)
	}
}

type decisionLine struct {
	Time        string  `json:"time"`
	Level       string  `json:"level"`
	Msg         string  `json:"msg"`
	Pod         string  `json:"pod"`
	UID         string  `json:"uid,omitempty"`
	Verb        string  `json:"verb"`
	ContainerID string  `json:"containerID"`
	Decision    string  `json:"decision"`
	Reason      string  `json:"reason"`
	Annotation  string  `json:"annotation,omitempty"`
	PodSource   string  `json:"podSource,omitempty"`
	DurationMS  float64 `json:"durationMs"`
}

func levelOf(decision string) string {
	switch decision {
	case agentapi.DecisionRefused, agentapi.DecisionError, agentapi.DecisionBypassed:
		return "WARN"
	}
	return "INFO"
}

// causeOf gives not-redirected and redirected decisions a bounded metric
// label from podcheck's reason text; anything unknown is "other".
func causeOf(decision, reason string) string {
	if decision == agentapi.DecisionRedirected {
		return "qualifies"
	}
	for _, c := range []struct{ substr, cause string }{
		{"is excluded", "excluded-namespace"},
		{"own installer", "installer-pod"},
		{"not a Kubernetes pod", "not-kubernetes"},
		{"has no istio-proxy", "no-sidecar"},
		{"a sidecar pod has more than one", "single-container"},
		{"injection disabled", "injection-disabled"},
		{"istio-init", "istio-init"},
		{"redirect removed", "removed"},
		{"netns", "netns-gone"},
	} {
		if strings.Contains(reason, c.substr) {
			return c.cause
		}
	}
	return "other"
}
