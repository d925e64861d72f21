// Command floor is the second floor of the ADD benchmark: what every
// exec'd chained plug-in pays at least. A minimal static Go program, exec'd
// like the plug-in: it reads its stdin, GETs the pod over a new connection,
// runs one iptables-restore in the pod's netns and prints the prevResult.
// The URL, the restore tool and the rules come in stdin (it decides
// nothing: the rules are the seed's, built by the benchmark).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

type conf struct {
	PrevResult json.RawMessage `json:"prevResult"`
	Floor      struct {
		URL     string `json:"url"`
		Restore string `json:"restore"`
		Script  string `json:"script"`
	} `json:"floor"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	var c conf
	if err := json.NewDecoder(os.Stdin).Decode(&c); err != nil {
		return err
	}
	ns, name := "", ""
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			ns = v
		case "K8S_POD_NAME":
			name = v
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(c.Floor.URL + "/api/v1/namespaces/" + ns + "/pods/" + name)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("GET pod: %d %v", resp.StatusCode, err)
	}
	var pod struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := json.Unmarshal(body, &pod); err != nil || pod.Metadata.Name != name {
		return fmt.Errorf("GET pod: not the pod: %v", err)
	}
	if err := restoreIn(os.Getenv("CNI_NETNS"), c.Floor.Restore, c.Floor.Script); err != nil {
		return err
	}
	_, err = os.Stdout.Write(c.PrevResult)
	return err
}

// restoreIn runs the restore from a thread moved into the netns (the child
// inherits it); the thread is never reused.
func restoreIn(netns, tool, script string) error {
	runtime.LockOSThread() // not unlocked: the thread dies with the process
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return err
	}
	cmd := exec.Command(tool, "--noflush", "--wait", "30")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", tool, err, out)
	}
	return nil
}
