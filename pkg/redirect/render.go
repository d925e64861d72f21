package redirect

import (
	"strconv"
	"strings"
)

// script is one iptables-restore transaction on one table: the prelude
// lines (declarations, deletions), then the rules.
func script(table string, prelude []string, rules []Rule) string {
	var b strings.Builder
	b.WriteString("*" + tableName(table) + "\n")
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
func declarations(table string) []string {
	own := ownChains(table)
	out := make([]string, 0, len(own))
	for _, c := range own {
		out = append(out, ":"+c+" - [0:0]")
	}
	return out
}

// Render is the ruleset as iptables-restore input for the nat table: the
// chains declared and the rules.
func Render(rs Ruleset) string { return script(rs.Table, declarations(rs.Table), rs.Rules) }

// String is the rule as an iptables-restore line.
func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// ApplyScript replaces whatever mesh-cni rules the table holds (cur) with rs
// in one iptables-restore --noflush transaction: old jumps into our chains are
// deleted (so re-ADD never duplicates them, and tampering is undone), our
// chains are declared (flushing them) and refilled. Nothing else is touched.
func ApplyScript(rs Ruleset, cur Table, del Deletion) string {
	return script(rs.Table, append(declarations(rs.Table), deleteJumps(cur, del)...), rs.Rules)
}

// Deletion is how a script names the jumps into our chains it deletes.
type Deletion int

const (
	// ByText repeats the rule as iptables-save printed it: safe if another
	// writer moves rules meanwhile, but a rule whose printed form does not
	// read back as the same rule matches nothing and fails the script.
	ByText Deletion = iota
	// ByPosition names the rule's number in its chain, counted in cur:
	// whatever the rule looks like, but only right while cur is current
	// (callers hold the netns lock and read just before).
	ByPosition
)

// deleteJumps deletes every jump into our chains that cur holds. By
// position, each chain's are deleted last first, so the numbers of those
// still to delete do not move.
func deleteJumps(cur Table, del Deletion) []string {
	jumps := cur.jumpsIntoOwn()
	out := make([]string, 0, len(jumps))
	if del == ByText {
		for _, j := range jumps {
			out = append(out, "-D "+j.rule.raw)
		}
		return out
	}
	for i := len(jumps) - 1; i >= 0; i-- {
		out = append(out, "-D "+jumps[i].chain+" "+strconv.Itoa(jumps[i].pos))
	}
	return out
}

// textDeletable reports whether every jump into our chains can be deleted
// by text: a rule printed over several lines (a comment holding a newline)
// cannot be written as one restore line.
func textDeletable(cur Table) bool {
	for _, j := range cur.jumpsIntoOwn() {
		if strings.ContainsAny(j.rule.raw, "\n\r") {
			return false
		}
	}
	return true
}

// FreshScript programs a netns that holds none of our chains yet — the
// normal ADD. It creates the chains with -N, so if any already exists the
// whole transaction fails and changes nothing; the caller then reads the
// table and replaces what is there (ApplyScript). This saves an
// iptables-save before the write on the path every new pod takes. (On nft,
// -N does not fail against a chain a concurrent writer created after the
// tool read the table — it re-evaluates instead — so Apply reads the table
// back after this script.)
func FreshScript(rs Ruleset) string {
	own := ownChains(rs.Table)
	prelude := make([]string, 0, len(own))
	for _, c := range own {
		prelude = append(prelude, "-N "+c)
	}
	return script(rs.Table, prelude, rs.Rules)
}

// CleanupScript removes every mesh-cni jump and chain present in cur, in one
// transaction. It returns "" when there is nothing to remove.
func CleanupScript(cur Table, del Deletion) string {
	prelude := deleteJumps(cur, del)
	var present []string
	for _, c := range ownChains(cur.name) {
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
	return script(cur.name, prelude, nil)
}
