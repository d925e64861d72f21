package redirect

import (
	"strings"
)

// script is one iptables-restore transaction on the nat table: the
// prelude lines (declarations, deletions), then the rules.
func script(prelude []string, rules []Rule) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, l := range prelude {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, r := range rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// declarations declare our chains; under --noflush that also empties them.
func declarations() []string {
	out := make([]string, 0, len(OwnChains))
	for _, c := range OwnChains {
		out = append(out, ":"+c+" - [0:0]")
	}
	return out
}

// Render is the ruleset as iptables-restore input for the nat table: the
// chains declared and the rules.
func Render(rs Ruleset) string { return script(declarations(), rs.Rules) }

// String is the rule as an iptables-restore line.
func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// ApplyScript replaces whatever mesh-cni rules the table holds (cur) with rs
// in one iptables-restore --noflush transaction: old jumps into our chains are
// deleted (so re-ADD never duplicates them, and tampering is undone), our
// chains are declared (flushing them) and refilled. Nothing else is touched.
func ApplyScript(rs Ruleset, cur Table) string {
	prelude := declarations()
	for _, l := range cur.jumpsIntoOwn() {
		prelude = append(prelude, "-D "+l)
	}
	return script(prelude, rs.Rules)
}

// FreshScript programs a netns that holds none of our chains yet — the
// normal ADD. It creates the chains with -N, so if any already exists the
// whole transaction fails and changes nothing; the caller then reads the
// table and replaces what is there (ApplyScript). This saves the
// iptables-save on the path every new pod takes.
func FreshScript(rs Ruleset) string {
	prelude := make([]string, 0, len(OwnChains))
	for _, c := range OwnChains {
		prelude = append(prelude, "-N "+c)
	}
	return script(prelude, rs.Rules)
}

// CleanupScript removes every mesh-cni jump and chain present in cur, in one
// transaction. It returns "" when there is nothing to remove.
func CleanupScript(cur Table) string {
	var prelude []string
	for _, l := range cur.jumpsIntoOwn() {
		prelude = append(prelude, "-D "+l)
	}
	var present []string
	for _, c := range OwnChains {
		if cur.Has(c) {
			present = append(present, c)
		}
	}
	if len(prelude) == 0 && len(present) == 0 {
		return ""
	}
	// Flush all before deleting any: our chains jump into each other.
	for _, c := range present {
		prelude = append(prelude, "-F "+c)
	}
	for _, c := range present {
		prelude = append(prelude, "-X "+c)
	}
	return script(prelude, nil)
}
