package redirect

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
)

// Table is the nat table as the kernel holds it, read from iptables-save.
type Table struct {
	chains map[string][]string // chain -> rules in canonical form ("CHAIN args")
	order  []string
}

// ParseSave reads the nat table out of iptables-save output.
func ParseSave(text string) (Table, error) {
	t := Table{chains: map[string][]string{}}
	inNat := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			t.declare(name)
		case strings.HasPrefix(line, "-A "):
			fields := strings.Fields(line[3:])
			if len(fields) < 1 {
				return Table{}, fmt.Errorf("iptables-save: rule without chain: %q", line)
			}
			t.declare(fields[0])
			t.chains[fields[0]] = append(t.chains[fields[0]], Canonical(fields[0], fields[1:]))
		default:
			return Table{}, fmt.Errorf("iptables-save: unexpected line %q", line)
		}
	}
	return t, sc.Err()
}

func (t *Table) declare(name string) {
	if _, ok := t.chains[name]; !ok {
		t.chains[name] = nil
		t.order = append(t.order, name)
	}
}

// Has reports whether the chain exists.
func (t Table) Has(chain string) bool { _, ok := t.chains[chain]; return ok }

// Rules returns a chain's rules in canonical form.
func (t Table) Rules(chain string) []string { return t.chains[chain] }

// jumpsIntoOwn lists the rules of other chains that jump into ours, in the
// form "-D" takes ("CHAIN args").
func (t Table) jumpsIntoOwn() []string {
	var out []string
	for _, c := range t.order {
		if slices.Contains(OwnChains, c) {
			continue
		}
		for _, r := range t.chains[c] {
			if target(r) != "" && slices.Contains(OwnChains, target(r)) {
				out = append(out, r)
			}
		}
	}
	return out
}

func target(rule string) string {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// Canonical writes a rule the way iptables-save prints it, minus the implicit
// protocol match ("-p tcp -m tcp") that iptables adds for --dport, so rules
// we render and rules the kernel reports compare equal.
func Canonical(chain string, args []string) string {
	out := make([]string, 0, len(args)+1)
	out = append(out, chain)
	for i := 0; i < len(args); i++ {
		if args[i] == "-m" && i+1 < len(args) && i >= 2 && args[i-2] == "-p" && args[i-1] == args[i+1] {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return strings.Join(out, " ")
}

// Diff compares the mesh-cni part of the table with the ruleset and returns
// one line per difference ("missing: ..." / "unexpected: ..."); nil when equal.
// Our chains must match exactly, in order; in other chains only the jumps
// into ours are compared, other plug-ins' rules are theirs.
func Diff(rs Ruleset, cur Table) []string {
	want := map[string][]string{}
	for _, r := range rs.Rules {
		want[r.Chain] = append(want[r.Chain], Canonical(r.Chain, r.Args))
	}
	var diff []string
	for _, c := range OwnChains {
		if !cur.Has(c) {
			diff = append(diff, "missing chain: "+c)
			continue
		}
		diff = append(diff, diffOrdered(want[c], cur.Rules(c))...)
	}
	have := cur.jumpsIntoOwn()
	var wantJumps []string
	for _, r := range rs.Rules {
		if !slices.Contains(OwnChains, r.Chain) {
			wantJumps = append(wantJumps, Canonical(r.Chain, r.Args))
		}
	}
	diff = append(diff, diffOrdered(wantJumps, have)...)
	return diff
}

// diffOrdered lists what must be added to and removed from have to make
// it want, keeping the longest common run in place: order matters in a
// chain, so a moved rule shows as both missing and unexpected.
func diffOrdered(want, have []string) []string {
	if slices.Equal(want, have) {
		return nil
	}
	// lcs[i][j] is the longest common subsequence of want[i:] and have[j:].
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(have)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(have) - 1; j >= 0; j-- {
			if want[i] == have[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case i < len(want) && j < len(have) && want[i] == have[j]:
			i, j = i+1, j+1
		case j < len(have) && (i == len(want) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, "unexpected: -A "+have[j])
			j++
		default:
			out = append(out, "missing: -A "+want[i])
			i++
		}
	}
	return out
}
