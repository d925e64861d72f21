package explain

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/meshcni/mesh-cni/pkg/config"
)

// Exit codes of `mesh-cni explain`.
const (
	ExitOK      = 0 // every pod explained, redirected or not
	ExitRefused = 1 // a document or pod was refused (unreadable, bad annotation)
	ExitUsage   = 2 // bad flags, unreadable file or config
)

// Command is `mesh-cni explain -f FILE [--config FILE] [-n NS] [-o text|json]`.
func Command(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "manifest to explain: YAML or JSON, one or many documents; - for stdin")
	cfgPath := fs.String("config", "", "a conflist (its mesh-cni entry is used) or a bare mesh-cni entry; default: the built-in defaults")
	ns := fs.String("n", "default", "namespace of pods whose manifest names none")
	out := fs.String("o", "text", "output: text or json")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *file == "" || fs.NArg() > 0 || (*out != "text" && *out != "json") {
		fmt.Fprintln(stderr, "usage: mesh-cni explain -f FILE|- [--config FILE] [-n NAMESPACE] [-o text|json]")
		return ExitUsage
	}
	input, err := readInput(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "mesh-cni explain: -f: %v\n", err)
		return ExitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "mesh-cni explain: --config %s: %v\n", *cfgPath, err)
		return ExitUsage
	}
	reports := All(input, *ns, cfg)
	write := WriteText
	if *out == "json" {
		write = WriteJSON
	}
	if err := write(stdout, reports); err != nil {
		fmt.Fprintf(stderr, "mesh-cni explain: %v\n", err)
		return ExitUsage
	}
	for _, r := range reports {
		if r.Refused() {
			return ExitRefused
		}
	}
	return ExitOK
}

// All explains every pod of the input.
func All(input []byte, defaultNamespace string, cfg *config.Config) []Report {
	var reports []Report
	for _, src := range Decode(input, defaultNamespace) {
		reports = append(reports, Explain(src, cfg))
	}
	return reports
}

func readInput(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(stdin, maxInput))
	}
	return os.ReadFile(path)
}

// maxInput bounds stdin; a file is read whole.
const maxInput = 64 << 20
