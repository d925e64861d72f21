package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteResult prints one pod's answer: the status word, why, the diff,
// then the nat table per family as the seed's check lists it.
func WriteResult(w io.Writer, r Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s: %s\n", r.Namespace, r.Name, r.Status)
	fmt.Fprintf(&b, "  %s\n", r.Reason)
	if r.ContainerID != "" {
		fmt.Fprintf(&b, "  sandbox %s, netns %s\n", r.ContainerID, r.Netns)
	}
	if len(r.Diff) > 0 {
		b.WriteString("diff (against what ADD programs now):\n")
		for _, d := range r.Diff {
			fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(d))
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if t, ok := r.Tables[fam]; ok {
			cmd := "iptables"
			if fam == "ipv6" {
				cmd = "ip6tables"
			}
			fmt.Fprintf(&b, "# %s -t nat -L -n -v --line-numbers -x\n%s", cmd, t)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteLines prints --all: one line per pod.
func WriteLines(w io.Writer, lines []Line) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tPOD\tREASON")
	for _, l := range lines {
		who := l.Namespace + "/" + l.Name
		if l.Record != "" {
			who = l.Record
		}
		reason := l.Reason
		if l.Status == Drift && len(l.Diff) > 0 {
			reason += ": " + strings.TrimSpace(l.Diff[len(l.Diff)-1])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Status, who, reason)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
