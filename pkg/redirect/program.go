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

// Interleaver is implemented by Tables that can tell whether their last
// successful Restore may have merged with another writer's commit.
// iptables-nft does not fail a transaction against a concurrent commit, it
// replays it: a replayed "-N" of a chain that appeared meanwhile is a
// no-op, and every rule lands twice. After a fresh write, Apply reads the
// table back when this says so, or when the Tables cannot tell.
type Interleaver interface {
	Interleaved() bool
}

// ErrBusy marks a Restore that gave up waiting for a lock another process
// held (the xtables lock): retrying at once would only wait again.
var ErrBusy = errors.New("the iptables lock is held by another process")

// maxReplace bounds how often Apply rewrites a table that does not read
// back as written (a writer that does not take our lock keeps interfering).
const maxReplace = 3

// Apply makes the nat table hold exactly rs in our chains. A netns without
// our chains takes one restore (and a read to check it when another
// writer's commit may have merged with ours); otherwise the current rules
// are read and replaced in one transaction (a repeated ADD, or one after
// tampering), and read back. A TPROXY ruleset then does the same to the
// mangle table and adds the policy route; if either fails, everything of
// ours in the family is removed again (all or nothing).
func Apply(t Tables, rs Ruleset) error {
	if err := canTProxy(t, rs); err != nil {
		return err
	}
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", rs.Family, err)
	}
	defer unlock()
	if err := applyTable(t, rs); err != nil {
		return err
	}
	if rs.Mangle == nil {
		return nil
	}
	if err := applyTProxy(t, rs); err != nil {
		if cerr := cleanup(t, rs.Family); cerr != nil {
			return errors.Join(err, fmt.Errorf("rolling back: %w", cerr))
		}
		return err
	}
	return nil
}

// applyTable programs one table; the caller holds the lock.
func applyTable(t Tables, rs Ruleset) error {
	freshErr := t.Restore(rs.Family, FreshScript(rs))
	if errors.Is(freshErr, ErrBusy) {
		return fmt.Errorf("%s %s table: %w", rs.Family, rs.table(), freshErr)
	}
	if freshErr == nil && !mayHaveInterleaved(t) {
		return nil
	}
	cur, err := readTable(t, rs.Family, rs.Table)
	if err != nil {
		return errors.Join(freshErr, err)
	}
	if freshErr != nil && !holdsAny(cur) {
		// -N cannot have failed on an existing chain: the restore itself
		// failed, and all or nothing means nothing was written.
		return fmt.Errorf("%s %s table: %w", rs.Family, rs.table(), freshErr)
	}
	if freshErr == nil && len(Diff(rs, cur)) == 0 {
		return nil
	}
	return replace(t, rs, cur)
}

// replace rewrites our part of the table until it reads back as rs. A
// rewrite that fails or does not read back as written (a writer that does
// not take our lock changed the table meanwhile) is retried on a fresh
// read, a bounded number of times.
func replace(t Tables, rs Ruleset, cur Table) error {
	var last error
	for range maxReplace {
		err := restoreDeleting(t, rs.Family, cur, func(cur Table, del Deletion) string { return ApplyScript(rs, cur, del) })
		if errors.Is(err, ErrBusy) {
			return err
		}
		var rerr error
		if cur, rerr = readTable(t, rs.Family, rs.Table); rerr != nil {
			return errors.Join(err, rerr)
		}
		diff := Diff(rs, cur)
		if err == nil && len(diff) == 0 {
			return nil
		}
		if last = err; last == nil {
			last = fmt.Errorf("%s %s table: another writer changed the mesh rules meanwhile:\n  %s", rs.Family, rs.table(), strings.Join(diff, "\n  "))
		}
	}
	return fmt.Errorf("gave up after %d rewrites: %w", maxReplace, last)
}

// restoreDeleting runs a script that deletes jumps: by text first, which
// stays right if another writer moves rules; if that fails (the text does
// not read back as the rule, or spans lines, or the rule moved), by
// position in a fresh read.
func restoreDeleting(t Tables, fam Family, cur Table, script func(Table, Deletion) string) error {
	var textErr error
	if textDeletable(cur) {
		textErr = t.Restore(fam, script(cur, ByText))
		if textErr == nil || errors.Is(textErr, ErrBusy) {
			return wrapFam(fam, cur.name, textErr)
		}
		var err error
		if cur, err = readTable(t, fam, cur.name); err != nil {
			return errors.Join(textErr, err)
		}
	}
	if err := t.Restore(fam, script(cur, ByPosition)); err != nil {
		return wrapFam(fam, cur.name, errors.Join(textErr, err))
	}
	return nil
}

func wrapFam(fam Family, table string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s table: %w", fam, tableName(table), err)
}

// holdsAny reports whether any of our chains exists.
func holdsAny(cur Table) bool {
	for _, c := range ownChains(cur.name) {
		if cur.Has(c) {
			return true
		}
	}
	return false
}

// Verify compares the kernel's rules with rs; the error carries the diff.
// A TPROXY ruleset's mangle rules and policy route are compared too.
func Verify(t Tables, rs Ruleset) error {
	if err := canTProxy(t, rs); err != nil {
		return err
	}
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", rs.Family, err)
	}
	defer unlock()
	if rs.Mangle == nil {
		cur, err := read(t, rs.Family)
		if err != nil {
			return err
		}
		return diffErr(rs, cur, nil)
	}
	nat, mangle, err := readBoth(t, rs.Family)
	if err != nil {
		return err
	}
	d := Diff(*rs.Mangle, mangle)
	rule, route, err := t.(Router).TProxyRoute(rs.Family, *rs.Route)
	if err != nil {
		return fmt.Errorf("%s policy routing: %w", rs.Family, err)
	}
	if !rule {
		d = append(d, fmt.Sprintf("missing: ip rule fwmark %d lookup %d", rs.Route.Mark, rs.Route.Table))
	}
	if !route {
		d = append(d, fmt.Sprintf("missing: local default route on lo in table %d", rs.Route.Table))
	}
	return diffErr(rs, nat, d)
}

func diffErr(rs Ruleset, nat Table, tproxy []string) error {
	d := Diff(rs, nat)
	if len(d)+len(tproxy) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s nat table differs from the expected mesh rules:\n  %s", rs.Family, strings.Join(d, "\n  "))
	if len(d) == 0 {
		msg = fmt.Sprintf("%s TPROXY mangle rules or policy routing differ from the expected:\n  %s", rs.Family, strings.Join(tproxy, "\n  "))
	} else if len(tproxy) > 0 {
		msg += "\n  TPROXY (mangle, policy routing):\n  " + strings.Join(tproxy, "\n  ")
	}
	return errors.New(msg)
}

// Cleanup removes every mesh-cni jump and chain of fam, in nat and (TPROXY)
// in mangle, and the TPROXY policy route; a table without them is left
// untouched.
func Cleanup(t Tables, fam Family) error {
	unlock, err := lock(t)
	if err != nil {
		return fmt.Errorf("%s nat table: %w", fam, err)
	}
	defer unlock()
	return cleanup(t, fam)
}

// cleanup is Cleanup under the lock. With an AllSaver it reads nat and
// mangle in one call, so REDIRECT pods pay nothing for TPROXY support. The
// route goes before the mangle chains: while they exist, DEL still knows
// to look for it (Apply adds it after them).
func cleanup(t Tables, fam Family) error {
	var nat, mangle Table
	var err error
	if _, ok := t.(AllSaver); ok {
		nat, mangle, err = readBoth(t, fam)
	} else {
		nat, err = read(t, fam)
	}
	if err != nil {
		return err
	}
	if holdsAny(mangle) || len(mangle.jumpsIntoOwn()) > 0 {
		if r, ok := t.(Router); ok {
			if err := r.DelTProxyRoute(fam, TProxyRoute{Mark: DefaultTProxyMark, Table: DefaultTProxyTable}); err != nil {
				return fmt.Errorf("%s policy routing: removing the TPROXY route: %w", fam, err)
			}
		}
		if err := cleanupTable(t, fam, mangle); err != nil {
			return err
		}
	}
	return cleanupTable(t, fam, nat)
}

func cleanupTable(t Tables, fam Family, cur Table) error {
	if CleanupScript(cur, ByText) == "" {
		return nil
	}
	err := restoreDeleting(t, fam, cur, CleanupScript)
	if err != nil {
		return fmt.Errorf("removing mesh rules: %w", err)
	}
	return nil
}

func mayHaveInterleaved(t Tables) bool {
	i, ok := t.(Interleaver)
	return !ok || i.Interleaved()
}

// applyTProxy programs the mangle rules, then the route; the caller holds
// the lock and rolls back on error.
func applyTProxy(t Tables, rs Ruleset) error {
	if err := applyTable(t, *rs.Mangle); err != nil {
		return err
	}
	if err := t.(Router).AddTProxyRoute(rs.Family, *rs.Route); err != nil {
		return fmt.Errorf("%s policy routing: %s: %w", rs.Family, rs.Route, err)
	}
	return nil
}

// canTProxy refuses, before anything is written, a TPROXY ruleset on
// Tables that cannot reach the mangle table and the routes.
func canTProxy(t Tables, rs Ruleset) error {
	if rs.Mangle == nil {
		return nil
	}
	_, router := t.(Router)
	_, saver := t.(AllSaver)
	if !router || !saver || rs.Route == nil {
		return fmt.Errorf("%s: TPROXY needs the mangle table and policy routing, which these tables cannot program", rs.Family)
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

// readTable reads one table: nat through Save, others through SaveAll.
func readTable(t Tables, fam Family, table string) (Table, error) {
	if tableName(table) == TableNat {
		return read(t, fam)
	}
	s, ok := t.(AllSaver)
	if !ok {
		return Table{name: table}, fmt.Errorf("%s %s table: these tables cannot read it", fam, table)
	}
	text, err := s.SaveAll(fam)
	if err != nil {
		return Table{}, fmt.Errorf("%s %s table: reading: %w", fam, table, err)
	}
	cur, err := ParseSaveTable(text, table)
	if err != nil {
		return Table{}, fmt.Errorf("%s %s table: %w", fam, table, err)
	}
	return cur, nil
}

// readBoth reads nat and mangle in one SaveAll call.
func readBoth(t Tables, fam Family) (nat, mangle Table, err error) {
	text, err := t.(AllSaver).SaveAll(fam)
	if err != nil {
		return Table{}, Table{}, fmt.Errorf("%s tables: reading: %w", fam, err)
	}
	if nat, err = ParseSaveTable(text, TableNat); err != nil {
		return Table{}, Table{}, fmt.Errorf("%s nat table: %w", fam, err)
	}
	if mangle, err = ParseSaveTable(text, TableMangle); err != nil {
		return Table{}, Table{}, fmt.Errorf("%s mangle table: %w", fam, err)
	}
	return nat, mangle, nil
}

// ApplyAll programs every ruleset (one per family) under one hold of the
// netns lock, so a failure's rollback cannot remove what a concurrent
// writer of the same netns just programmed. On failure every family
// already applied is removed again (never one family redirected and the
// other not); onRollbackErr hears of a removal that failed. The error is
// the failing Apply's (or the lock's), unwrapped, for the caller to word.
func ApplyAll(t Tables, rss []Ruleset, onRollbackErr func(Family, error)) error {
	unlock, err := lock(t)
	if err != nil {
		return err
	}
	defer unlock()
	var applied []Family
	for _, rs := range rss {
		if err := Apply(t, rs); err != nil {
			for _, fam := range applied {
				if cerr := Cleanup(t, fam); cerr != nil && onRollbackErr != nil {
					onRollbackErr(fam, cerr)
				}
			}
			return err
		}
		applied = append(applied, rs.Family)
	}
	return nil
}
