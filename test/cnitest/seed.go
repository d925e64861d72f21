package cnitest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// SeedSpec reads the seed's expected rules (the copy of
// ../shared/spec/seed-nat-rules.txt kept in pkg/redirect/testdata) as a
// ruleset, independent of the code that builds the rules.
func SeedSpec() (redirect.Ruleset, error) {
	path := filepath.Join(RepoRoot(), "pkg", "redirect", "testdata", "seed-nat-rules.txt")
	b, err := os.ReadFile(path)
	if err != nil {
		return redirect.Ruleset{}, err
	}
	rs := redirect.Ruleset{Family: redirect.IPv4}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "-A" {
			rs.Rules = append(rs.Rules, redirect.Rule{Chain: f[1], Args: f[2:]})
		}
	}
	if len(rs.Rules) == 0 {
		return rs, fmt.Errorf("%s: no rules", path)
	}
	return rs, nil
}
