package redirecttest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// SeedSpecPath is the seed's expected rules: ../shared/spec/seed-nat-rules.txt
// beside the checkout (CI clones main with shared/ next to it), else the
// copy kept in pkg/redirect/testdata so the repository stands alone.
func SeedSpecPath() string {
	_, file, _, _ := runtime.Caller(0)
	pkgRedirect := filepath.Join(filepath.Dir(file), "..")
	shared := filepath.Join(pkgRedirect, "..", "..", "..", "shared", "spec", "seed-nat-rules.txt")
	if _, err := os.Stat(shared); err == nil {
		return shared
	}
	return filepath.Join(pkgRedirect, "testdata", "seed-nat-rules.txt")
}

// SeedRestore is the spec's iptables-restore input, from "*nat" to COMMIT.
func SeedRestore() (string, error) {
	path := SeedSpecPath()
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	text := string(b)
	i := strings.Index(text, "*nat\n")
	if i < 0 {
		return "", fmt.Errorf("%s: no *nat section", path)
	}
	return text[i:], nil
}

// SeedRuleset is the spec's rules as a ruleset, read independently of the
// code that builds rules, to check that code against.
func SeedRuleset() (redirect.Ruleset, error) {
	restore, err := SeedRestore()
	if err != nil {
		return redirect.Ruleset{}, err
	}
	rs := redirect.Ruleset{Family: redirect.IPv4}
	for _, line := range strings.Split(restore, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "-A" {
			rs.Rules = append(rs.Rules, redirect.Rule{Chain: f[1], Args: f[2:]})
		}
	}
	if len(rs.Rules) == 0 {
		return rs, fmt.Errorf("%s: no rules", SeedSpecPath())
	}
	return rs, nil
}
