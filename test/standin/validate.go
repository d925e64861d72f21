package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"
)

// validate is what Istio's istio-validation init container does in CNI
// mode, run as the proxy's UID before the app starts: listen on the
// capture ports, connect to 127.0.0.6:15002 and require the connection to
// land on one of them with that original destination. A pod whose netns
// was not programmed then fails to start instead of running unmeshed.
// --want none proves the opposite: nothing is captured (istio-init pods,
// which mesh-cni must leave alone).
func validate(args []string) error {
	fs := flag.NewFlagSet("validate", flag.ExitOnError)
	ports := fs.String("ports", "15001,15006", "capture ports to listen on")
	target := fs.String("target", "127.0.0.6:15002", "address to connect to")
	want := fs.String("want", "captured", "captured | none")
	timeout := fs.Duration("timeout", 5*time.Second, "overall timeout")
	_ = fs.Parse(args)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	landed := make(chan string, 1)
	for _, p := range splitList(*ports) {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				orig, err := originalDst(c.(*net.TCPConn))
				if err != nil {
					orig = "none"
				}
				_, _ = fmt.Fprintf(c, "port=%s orig=%s\n", p, orig)
				c.Close()
				select {
				case landed <- fmt.Sprintf("port=%s orig=%s", p, orig):
				default:
				}
			}
		}()
	}
	c, err := net.DialTimeout("tcp", *target, *timeout)
	if *want == "none" {
		if err == nil {
			c.Close()
			return fmt.Errorf("validation: %s was answered, but this pod must not be redirected", *target)
		}
		fmt.Printf("validation ok: %s not captured (%v)\n", *target, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("validation failed: %s not redirected to %s: %w", *target, *ports, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("validation failed: reading from %s: %w", *target, err)
	}
	line = strings.TrimSpace(line)
	if !strings.HasSuffix(line, "orig="+*target) {
		return errors.New("validation failed: landed as " + line + ", want original destination " + *target)
	}
	fmt.Println("validation ok:", line)
	return nil
}
