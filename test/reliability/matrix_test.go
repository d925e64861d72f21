// Package reliability keeps docs/reliability.md honest: every row of the
// matrix must name a test, and every named test must exist, so a row cannot
// outlive the test that proves its promise.
package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const matrix = "../../docs/reliability.md"

// goRef is `pkg/dir.TestName` (optionally /subtest); shRef is
// `test/e2e/e2e.sh: check text`.
var (
	goRef = regexp.MustCompile("`((?:pkg|cmd|test|bench)/[A-Za-z0-9_/.-]+?)\\.((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)(/[^`]*)?`")
	shRef = regexp.MustCompile("`((?:test|\\.ci)/[A-Za-z0-9_/.-]+\\.sh): ([^`]+)`")
)

type row struct {
	line int
	text string
}

// rows are the body rows of the matrix's fault tables: the tables whose
// first header cell is "fault" (the fuzzing records are other tables).
func rows(t *testing.T) []row {
	b, err := os.ReadFile(matrix)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []row
	inFaults := false
	for i, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case !strings.HasPrefix(l, "|"):
			inFaults = false
		case i+1 < len(lines) && isSeparator(lines[i+1]):
			inFaults = strings.EqualFold(firstCell(l), "fault")
		case isSeparator(l):
		case inFaults:
			out = append(out, row{i + 1, l})
		}
	}
	return out
}

func isSeparator(l string) bool {
	l = strings.TrimSpace(l)
	return strings.HasPrefix(l, "|") && strings.Trim(l, "|-: ") == ""
}

func firstCell(l string) string {
	cells := strings.Split(strings.Trim(l, "|"), "|")
	return strings.TrimSpace(cells[0])
}

func TestEveryRowNamesAnExistingTest(t *testing.T) {
	rs := rows(t)
	if len(rs) < 20 {
		t.Fatalf("the matrix has %d rows; the issue asks for one per fault", len(rs))
	}
	for _, r := range rs {
		gos, shs := goRef.FindAllStringSubmatch(r.text, -1), shRef.FindAllStringSubmatch(r.text, -1)
		if len(gos)+len(shs) == 0 {
			t.Errorf("docs/reliability.md:%d names no test: %s", r.line, r.text)
		}
		for _, m := range gos {
			if err := goTestExists(m[1], m[2]); err != nil {
				t.Errorf("docs/reliability.md:%d: %v", r.line, err)
			}
		}
		for _, m := range shs {
			if err := scriptCheckExists(m[1], m[2]); err != nil {
				t.Errorf("docs/reliability.md:%d: %v", r.line, err)
			}
		}
	}
}

// goTestExists looks for "func Name(" in the package directory's test files.
func goTestExists(dir, name string) error {
	files, err := filepath.Glob(filepath.Join("../..", dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("%s: no test files", dir)
	}
	decl := regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(name) + `\(`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if decl.Match(b) {
			return nil
		}
	}
	return fmt.Errorf("%s.%s: no such test", dir, name)
}

// scriptCheckExists looks for the check's text in the script.
func scriptCheckExists(script, check string) error {
	b, err := os.ReadFile(filepath.Join("../..", script))
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), strings.TrimSpace(check)) {
		return fmt.Errorf("%s: no check %q", script, check)
	}
	return nil
}
