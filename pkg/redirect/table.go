package redirect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Table is one table (nat unless name says otherwise) as the kernel holds
// it, read from iptables-save.
type Table struct {
	name   string // "" is nat
	chains map[string][]savedRule
	order  []string
}

// savedRule is one "-A" line of iptables-save output.
type savedRule struct {
	raw    string // "CHAIN args" exactly as iptables-save printed it, quotes and all
	canon  string // Canonical form, for comparing with what we render
	target string // the -j/-g target, "" without one
}

// ParseSave reads the nat table out of iptables-save output. Arguments are
// split the way iptables-restore splits them (double quotes, backslash
// escapes), so a foreign rule's comment can neither hide nor fake a jump;
// a quoted argument may even span lines (a comment holding a newline).
func ParseSave(text string) (Table, error) { return ParseSaveTable(text, TableNat) }

// ParseSaveTable reads the named table out of iptables-save output (which
// may hold several); a table the output lacks reads as empty.
func ParseSaveTable(text, table string) (Table, error) {
	t := Table{name: table, chains: map[string][]savedRule{}}
	inNat := false
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inNat = line == "*"+tableName(table)
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			t.declare(name)
		case strings.HasPrefix(line, "-A "):
			raw := line[3:]
			args, ok := splitArgs(raw)
			// An open quote continues on the next line.
			for !ok && i+1 < len(lines) {
				i++
				raw += "\n" + lines[i]
				args, ok = splitArgs(raw)
			}
			if !ok {
				return Table{}, fmt.Errorf("iptables-save: unterminated quote in %q", line)
			}
			if len(args) < 1 {
				return Table{}, fmt.Errorf("iptables-save: rule without chain: %q", line)
			}
			t.declare(args[0])
			t.chains[args[0]] = append(t.chains[args[0]], savedRule{
				raw: raw, canon: Canonical(args[0], args[1:]), target: target(args[1:]),
			})
		default:
			return Table{}, fmt.Errorf("iptables-save: unexpected line %q", line)
		}
	}
	return t, nil
}

// splitArgs splits a rule the way iptables-restore does: whitespace
// separates arguments except inside double quotes, where a backslash makes
// the next character literal. ok is false when a quote is left open.
func splitArgs(s string) (args []string, ok bool) {
	var cur strings.Builder
	inArg, quoted, escaped := false, false, false
	for _, c := range s {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, !quoted && !escaped
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
func (t Table) Rules(chain string) []string {
	var out []string
	for _, r := range t.chains[chain] {
		out = append(out, r.canon)
	}
	return out
}

// jump is a rule of another chain that jumps into one of ours.
type jump struct {
	chain string
	pos   int // 1-based, as "-D CHAIN N" counts
	rule  savedRule
}

// jumpsIntoOwn lists the rules of other chains that jump into ours, chain
// by chain in table order, each chain's in rule order.
func (t Table) jumpsIntoOwn() []jump {
	var out []jump
	own := ownChains(t.name)
	for _, c := range t.order {
		if slices.Contains(own, c) {
			continue
		}
		for i, r := range t.chains[c] {
			if slices.Contains(own, r.target) {
				out = append(out, jump{chain: c, pos: i + 1, rule: r})
			}
		}
	}
	return out
}

// target is the rule's -j/-g argument; the last one wins, as in iptables.
func target(args []string) string {
	t := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" || args[i] == "--jump" || args[i] == "--goto" {
			t = args[i+1]
			i++
		}
	}
	return t
}

// Canonical writes a rule so that what we render and what iptables-save
// prints for it compare equal:
//   - the implicit protocol match iptables adds for --dport ("-p tcp -m tcp")
//     is dropped;
//   - an address is masked and printed one way (iptables-save prints
//     "::1.2.3.4/128" where Go prints "::102:304/128");
//   - a range that matches everything ("-d 0.0.0.0/0", "-s ::/0", and
//     "203.0.113.7/0", which masks to it) is dropped: iptables-save omits it;
//   - an argument holding spaces or quotes is quoted, so the form is
//     unambiguous.
func Canonical(chain string, args []string) string {
	out := make([]string, 0, len(args)+1)
	out = append(out, chain)
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-m" && i+1 < len(args) && i >= 2 && args[i-2] == "-p" && args[i-1] == args[i+1]:
			i++
			continue
		case (a == "-i" || a == "-o") && i+1 < len(args):
			// The interface is an argument, never an option of its own.
			out = append(out, a, quoteArg(args[i+1]))
			i++
			continue
		case (a == "-s" || a == "-d") && i+1 < len(args):
			if p, ok := parseAddrArg(args[i+1]); ok {
				i++
				negated := out[len(out)-1] == "!"
				if p.Bits() == 0 && !negated {
					continue
				}
				out = append(out, a, p.String())
				continue
			}
		}
		out = append(out, quoteArg(a))
	}
	return strings.Join(out, " ")
}

// parseAddrArg reads an -s/-d value: a CIDR or a bare address (a host).
func parseAddrArg(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func quoteArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\n\r\"\\'") {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
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
	own := ownChains(rs.Table)
	for _, c := range own {
		if !cur.Has(c) {
			diff = append(diff, "missing chain: "+c)
			continue
		}
		diff = append(diff, diffOrdered(want[c], cur.Rules(c))...)
	}
	var have, wantJumps []string
	for _, j := range cur.jumpsIntoOwn() {
		have = append(have, j.rule.canon)
	}
	for _, r := range rs.Rules {
		if !slices.Contains(own, r.Chain) {
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
