package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/meshcni/mesh-cni/pkg/podcheck"
)

// WriteText prints the reports for a terminal. The restore text is printed
// unindented, as iptables-restore reads it.
func WriteText(w io.Writer, reports []Report) error {
	var b strings.Builder
	for i, r := range reports {
		if i > 0 {
			b.WriteString("\n")
		}
		writeOne(&b, r)
	}
	_, err := io.WriteString(w, trimLines(b.String()))
	return err
}

// WriteJSON prints the reports as one JSON array.
func WriteJSON(w io.Writer, reports []Report) error {
	if reports == nil {
		reports = []Report{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(reports)
}

func writeOne(b *strings.Builder, r Report) {
	fmt.Fprintf(b, "# document %d: %s %s\n", r.Document, kindOrUnknown(r.Kind), title(r))
	switch {
	case r.Error != "":
		fmt.Fprintf(b, "verdict: REFUSED: %s\n", r.Error)
	case r.Skipped != "":
		fmt.Fprintf(b, "verdict: skipped: %s\n", r.Skipped)
		return
	case r.Redirect:
		fmt.Fprintf(b, "verdict: redirected: %s\n", r.Reason)
	default:
		fmt.Fprintf(b, "verdict: not redirected: %s\n", r.Reason)
	}
	if len(r.Checks) > 0 {
		b.WriteString("checks:\n")
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		for _, c := range r.Checks {
			mark := "ok"
			switch {
			case strings.HasPrefix(c.Detail, podcheck.NotEvaluated):
				mark = "--"
			case !c.OK:
				mark = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", mark, c.Condition, c.Detail)
		}
		tw.Flush()
	}
	if len(r.Settings) > 0 {
		b.WriteString("settings:\n")
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		for _, s := range r.Settings {
			src := s.Source
			if s.Key != "" {
				src += " " + s.Key
			}
			fmt.Fprintf(tw, "  %s\t%q\t%s\n", s.Name, s.Value, src)
		}
		tw.Flush()
	}
	if r.Rules != nil {
		b.WriteString("# IPv4: iptables-restore --noflush input\n")
		b.WriteString(r.Rules.IPv4)
		b.WriteString("# IPv6: ip6tables-restore --noflush input (when the pod has an IPv6 address)\n")
		b.WriteString(r.Rules.IPv6)
	}
}

// trimLines drops the padding tabwriter leaves after a last empty column.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func title(r Report) string {
	if r.Name == "" && r.Namespace == "" {
		return "(unnamed)"
	}
	return r.Namespace + "/" + r.Name
}
