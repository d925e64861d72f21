// Command hello is the benchmark's reference for process-start cost: a
// static Go binary that prints one line and exits. Whatever a CNI plug-in
// written in Go does, it pays at least this for every exec.
package main

import "os"

func main() { _, _ = os.Stdout.WriteString("hello\n") }
