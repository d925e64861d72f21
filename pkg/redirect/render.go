package redirect

import (
	"strings"
)

// Render is the ruleset as iptables-restore input for the nat table: the
// chains declared (which, under --noflush, also empties them) and the rules.
func Render(rs Ruleset) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	declare(&b)
	for _, r := range rs.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func declare(b *strings.Builder) {
	for _, c := range OwnChains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
}

// String is the rule as an iptables-restore line.
func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// ApplyScript replaces whatever mesh-cni rules the table holds (cur) with rs
// in one iptables-restore --noflush transaction: old jumps into our chains are
// deleted (so re-ADD never duplicates them, and tampering is undone), our
// chains are declared (flushing them) and refilled. Nothing else is touched.
func ApplyScript(rs Ruleset, cur Table) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	declare(&b)
	for _, l := range cur.jumpsIntoOwn() {
		b.WriteString("-D " + l + "\n")
	}
	for _, r := range rs.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// CleanupScript removes every mesh-cni jump and chain present in cur, in one
// transaction. It returns "" when there is nothing to remove.
func CleanupScript(cur Table) string {
	jumps := cur.jumpsIntoOwn()
	var present []string
	for _, c := range OwnChains {
		if cur.Has(c) {
			present = append(present, c)
		}
	}
	if len(jumps) == 0 && len(present) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, l := range jumps {
		b.WriteString("-D " + l + "\n")
	}
	// Flush all before deleting any: our chains jump into each other.
	for _, c := range present {
		b.WriteString("-F " + c + "\n")
	}
	for _, c := range present {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// FreshScript programs a netns that holds none of our chains yet — the
// normal ADD. It creates the chains with -N, so if any already exists the
// whole transaction fails and changes nothing; the caller then reads the
// table and replaces what is there (ApplyScript). This saves the
// iptables-save on the path every new pod takes.
func FreshScript(rs Ruleset) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range OwnChains {
		b.WriteString("-N " + c + "\n")
	}
	for _, r := range rs.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
