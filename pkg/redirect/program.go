package redirect

import (
	"errors"
	"fmt"
	"strings"
)

// Tables reads and writes one netns's nat table. The real one runs
// iptables-save/-restore inside the pod's netns; tests may pass their own.
type Tables interface {
	// Save returns iptables-save output for the nat table of fam.
	Save(fam Family) (string, error)
	// Restore runs the script with iptables-restore --noflush: all or nothing.
	Restore(fam Family, script string) error
}

// Apply makes the nat table hold exactly rs in our chains. A netns without
// our chains takes one restore; otherwise the current rules are read and
// replaced in one transaction (a repeated ADD, or one after tampering).
func Apply(t Tables, rs Ruleset) error {
	freshErr := t.Restore(rs.Family, FreshScript(rs))
	if freshErr == nil {
		return nil
	}
	cur, err := read(t, rs.Family)
	if err != nil {
		return errors.Join(freshErr, err)
	}
	if err := t.Restore(rs.Family, ApplyScript(rs, cur)); err != nil {
		return fmt.Errorf("%s nat table: %w", rs.Family, err)
	}
	return nil
}

// Verify compares the kernel's rules with rs; the error carries the diff.
func Verify(t Tables, rs Ruleset) error {
	cur, err := read(t, rs.Family)
	if err != nil {
		return err
	}
	if d := Diff(rs, cur); len(d) > 0 {
		return fmt.Errorf("%s nat table differs from the expected mesh rules:\n  %s", rs.Family, strings.Join(d, "\n  "))
	}
	return nil
}

// Cleanup removes every mesh-cni jump and chain of fam; a table without
// them is left untouched.
func Cleanup(t Tables, fam Family) error {
	cur, err := read(t, fam)
	if err != nil {
		return err
	}
	if script := CleanupScript(cur); script != "" {
		if err := t.Restore(fam, script); err != nil {
			return fmt.Errorf("%s nat table: removing mesh rules: %w", fam, err)
		}
	}
	return nil
}

func read(t Tables, fam Family) (Table, error) {
	text, err := t.Save(fam)
	if err != nil {
		return Table{}, fmt.Errorf("%s nat table: reading: %w", fam, err)
	}
	cur, err := ParseSave(text)
	if err != nil {
		return Table{}, fmt.Errorf("%s nat table: %w", fam, err)
	}
	return cur, nil
}
