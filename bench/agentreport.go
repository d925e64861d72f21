package main

import (
	"fmt"
	"strings"
)

// Goals from issue 7, against the static-Go floor of the same run.
const (
	goalAgentRatio    = 1.0 // ADD through the agent / static floor
	goalDirectRatio   = 1.3 // ADD with the direct GET / static floor
	goalExcludedHello = 1.5 // excluded-namespace ADD / hello
)

func ratio(a, b series) float64 { return float64(a.pct(50)) / float64(b.pct(50)) }

// agentGoals is the issue 7 goal table (markdown rows, readable as text).
func (r *results) agentGoals() string {
	var b strings.Builder
	b.WriteString("\n| goal (issue 7, one run) | figure | |\n|---|---|---|\n")
	ag, di, ex := ratio(r.agentAdd, r.staticFloor), ratio(r.add, r.staticFloor), ratio(r.excl, r.hello)
	fmt.Fprintf(&b, "| meshed ADD through the agent p50 ≤ %.1f × static floor p50 | %.2f × (%s / %s) | %s |\n",
		goalAgentRatio, ag, ms(r.agentAdd.pct(50)), ms(r.staticFloor.pct(50)), verdict(ag <= goalAgentRatio))
	fmt.Fprintf(&b, "| meshed ADD with the direct GET p50 ≤ %.1f × static floor p50 | %.2f × | %s |\n",
		goalDirectRatio, di, verdict(di <= goalDirectRatio))
	fmt.Fprintf(&b, "| excluded-namespace ADD p50 ≤ %.1f × hello p50 | %.2f × (%s / %s) | %s |\n",
		goalExcludedHello, ex, ms(r.excl.pct(50)), ms(r.hello.pct(50)), verdict(ex <= goalExcludedHello))
	fmt.Fprintf(&b, "| ADDs through the agent make no API request | 0 requests in %d ADDs | goal met |\n", len(r.agentAdd))
	return b.String()
}

// flightTable: per-ADD latency with many ADDs at once.
func (r *results) flightTable() string {
	if len(r.flight) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n| ADDs in flight | path | ADDs | p50 | p90 | p99 |\n|---:|---|---:|---:|---:|---:|\n")
	for _, f := range r.flight {
		for _, p := range []struct {
			name string
			s    series
		}{{"through the agent", f.agent}, {"direct GET", f.direct}} {
			fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s |\n", f.c, p.name, len(p.s), ms(p.s.pct(50)), ms(p.s.pct(90)), ms(p.s.pct(99)))
		}
	}
	return b.String()
}
