package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
)

// outcome is what a verb decided, reported to the node agent when it ends.
type outcome struct {
	start            time.Time
	verb             string
	decision, reason string
	source           string
	records          *recordBuffer
}

func (o *outcome) decide(decision, reason string) { o.decision, o.reason = decision, reason }

// Bounds of what one verb sends to the agent.
const (
	maxRecords     = 64
	maxRecordBytes = 256 << 10
)

// recordBuffer keeps the verb's log records as JSON lines, bounded.
type recordBuffer struct {
	buf   bytes.Buffer
	lines int
	full  bool
}

func (b *recordBuffer) Write(p []byte) (int, error) {
	if b.lines >= maxRecords || b.buf.Len()+len(p) > maxRecordBytes {
		b.full = true
		return len(p), nil
	}
	b.lines++
	return b.buf.Write(p)
}

func (b *recordBuffer) records() []json.RawMessage {
	var out []json.RawMessage
	for _, line := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte{'\n'}) {
		if len(line) > 0 {
			out = append(out, json.RawMessage(line))
		}
	}
	return out
}

// teeHandler sends every record to the usual log and to the agent buffer.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errA, errB error
	if t.a.Enabled(ctx, r.Level) {
		errA = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		errB = t.b.Handle(ctx, r)
	}
	return errors.Join(errA, errB)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}

// withAgent prepares the invocation for the agent: a client and a log
// that also keeps the records for it. Only verbs about a pod report.
func (p *Plugin) withAgent(inv *invocation, args *skel.CmdArgs, level slog.Level) {
	inv.out.start = time.Now()
	if inv.cfg.AgentSocket == "" || p.Agent == nil {
		return
	}
	switch inv.out.verb {
	case "ADD", "CHECK", "DEL":
	default:
		return
	}
	inv.agent = p.Agent(inv.cfg.AgentSocket)
	inv.out.records = &recordBuffer{}
	capture := slog.NewJSONHandler(inv.out.records, &slog.HandlerOptions{Level: level}).
		WithAttrs([]slog.Attr{slog.String("containerID", args.ContainerID)})
	inv.log = slog.New(teeHandler{inv.log.Handler(), capture})
}

// finish sends the verb's outcome to the agent, best effort and within
// reportBudget.
func (p *Plugin) finish(inv *invocation, args *skel.CmdArgs, err error) {
	if inv.agent == nil {
		return
	}
	defer inv.agent.Close()
	// Bounded as the CNI error is (guard bounds that one later): the reason
	// becomes a log line and an Event message.
	rep := inv.report(args, boundedErr(err))
	ctx, cancel := context.WithTimeout(context.Background(), reportBudget)
	defer cancel()
	_ = inv.agent.Report(ctx, rep) // the agent being away is not the verb's problem
}

func (inv *invocation) report(args *skel.CmdArgs, err error) *agentapi.Report {
	o := &inv.out
	r := &agentapi.Report{
		Verb: o.verb, ContainerID: args.ContainerID, Source: o.source,
		Decision: o.decision, Reason: o.reason,
		DurationMicros: time.Since(o.start).Microseconds(),
	}
	if inv.isK8s {
		r.Namespace, r.Name, r.UID = inv.pod.Namespace, inv.pod.Name, inv.pod.UID
	}
	if r.Source == "" {
		r.Source = agentapi.SourceNone
	}
	if err != nil {
		r.Decision, r.Cause, r.Reason = agentapi.DecisionError, agentapi.CauseInvalid, err.Error()
		var e *types.Error
		if errors.As(err, &e) {
			r.Reason = e.Msg
			r.Decision, r.Cause = causeOfCode(e.Code)
			if e.Code == CodeBadAnnotation {
				r.Annotation = annotationIn(e.Msg)
			}
		}
	}
	if r.Decision == "" {
		r.Decision = agentapi.DecisionNotRedirected
		if r.Reason == "" {
			r.Reason = strings.ToLower(o.verb) + " done"
		}
	}
	if o.records != nil {
		r.Records = o.records.records()
	}
	return r
}

func causeOfCode(code uint) (decision, cause string) {
	switch code {
	case CodeBadAnnotation:
		return agentapi.DecisionRefused, agentapi.CauseBadAnnotation
	case types.ErrTryAgainLater:
		return agentapi.DecisionRefused, agentapi.CauseAPIUnreachable
	case CodePodLookup:
		return agentapi.DecisionRefused, agentapi.CausePodNotFound
	case CodeProgramming:
		return agentapi.DecisionError, agentapi.CauseProgramming
	case CodeRulesDiffer:
		return agentapi.DecisionError, agentapi.CauseRulesDiffer
	}
	return agentapi.DecisionError, agentapi.CauseInvalid
}

// annotationIn finds the annotation a redirect error names ("annotation
// KEY=..."), as redirect.Resolve words every error.
func annotationIn(msg string) string {
	_, rest, ok := strings.Cut(msg, "annotation ")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, "=")
	if strings.ContainsAny(key, " \t\n") {
		return ""
	}
	return key
}
