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

// Locker is implemented by Tables that other processes may program at the
// same time (a runtime retrying an ADD while the first still runs). Apply,
// Verify and Cleanup hold the lock for their whole read-modify-write, so
// two of them never interleave on one netns.
type Locker interface {
	// Lock waits, for a bounded time, until this process alone works on
	// the netns; unlock ends that.
	Lock() (unlock func(), err error)
}

// ErrBusy marks a Restore that gave up waiting for a lock another process
// held (the xtables lock): retrying at once would only wait again.
var ErrBusy = errors.New("the iptables lock is held by another process")

// maxReplace bounds how often Apply rewrites a table that does not read
// back as written (a writer that does not take our lock keeps interfering).
const maxReplace = 3

// Apply makes the nat table hold exactly rs in our chains. A netns without
// our chains takes one restore and one read to check it; otherwise the
// current rules are read and replaced in one transaction (a repeated ADD,
// or one after tampering), and read back.
func Apply(t Tables, rs Ruleset) error {
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", rs.Family, err)
	}
	defer unlock()
	freshErr := t.Restore(rs.Family, FreshScript(rs))
	if errors.Is(freshErr, ErrBusy) {
		return fmt.Errorf("%s nat table: %w", rs.Family, freshErr)
	}
	cur, err := read(t, rs.Family)
	if err != nil {
		return errors.Join(freshErr, err)
	}
	if freshErr != nil && !holdsAny(cur) {
		// -N cannot have failed on an existing chain: the restore itself
		// failed, and all or nothing means nothing was written.
		return fmt.Errorf("%s nat table: %w", rs.Family, freshErr)
	}
	if freshErr == nil && len(Diff(rs, cur)) == 0 {
		return nil
	}
	return replace(t, rs, cur)
}

// replace rewrites our part of the table until it reads back as rs.
func replace(t Tables, rs Ruleset, cur Table) error {
	var diff []string
	for range maxReplace {
		if err := restoreDeleting(t, rs.Family, cur, func(del Deletion) string { return ApplyScript(rs, cur, del) }); err != nil {
			return err
		}
		var err error
		if cur, err = read(t, rs.Family); err != nil {
			return err
		}
		if diff = Diff(rs, cur); len(diff) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%s nat table: another writer keeps changing the mesh rules; after %d rewrites they still differ:\n  %s",
		rs.Family, maxReplace, strings.Join(diff, "\n  "))
}

// restoreDeleting runs a script that deletes jumps: by text first, which
// stays right if another writer moves rules; by position when the text
// cannot name the rule (it does not read back as itself, or spans lines).
func restoreDeleting(t Tables, fam Family, cur Table, script func(Deletion) string) error {
	var textErr error
	if textDeletable(cur) {
		textErr = t.Restore(fam, script(ByText))
		if textErr == nil || errors.Is(textErr, ErrBusy) {
			return wrapFam(fam, textErr)
		}
	}
	if err := t.Restore(fam, script(ByPosition)); err != nil {
		return wrapFam(fam, errors.Join(textErr, err))
	}
	return nil
}

func wrapFam(fam Family, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s nat table: %w", fam, err)
}

// holdsAny reports whether any of our chains exists.
func holdsAny(cur Table) bool {
	for _, c := range OwnChains {
		if cur.Has(c) {
			return true
		}
	}
	return false
}

// Verify compares the kernel's rules with rs; the error carries the diff.
func Verify(t Tables, rs Ruleset) error {
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", rs.Family, err)
	}
	defer unlock()
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
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", fam, err)
	}
	defer unlock()
	cur, err := read(t, fam)
	if err != nil {
		return err
	}
	if CleanupScript(cur, ByText) == "" {
		return nil
	}
	err = restoreDeleting(t, fam, cur, func(del Deletion) string { return CleanupScript(cur, del) })
	if err != nil {
		return fmt.Errorf("removing mesh rules: %w", err)
	}
	return nil
}

func lock(t Tables) (func(), error) {
	if l, ok := t.(Locker); ok {
		return l.Lock()
	}
	return func() {}, nil
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
