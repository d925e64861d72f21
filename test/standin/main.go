// Command standin is the test stand-in for the mesh's sidecar and apps.
//
//	standin proxy --ports 15001,15006   as UID 1337: report each connection's
//	                                     original destination (SO_ORIGINAL_DST)
//	standin app --listen :9080           a plain app that names itself
//	standin dial [--timeout 3s] ip:port  connect, print the peer's line
//
// It is static and dependency-free so it can be packed into an image as is.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = proxy(os.Args[2:])
	case "app":
		err = app(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: standin proxy --ports P,P | app --listen ADDR | dial [--timeout D] HOST:PORT")
	os.Exit(2)
}

func proxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	ports := fs.String("ports", "15001,15006", "ports to listen on")
	_ = fs.Parse(args)
	var lns []net.Listener
	for _, p := range strings.Split(*ports, ",") {
		ln, err := net.Listen("tcp", ":"+strings.TrimSpace(p))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		go serve(ln, func(c net.Conn) string {
			orig, err := originalDst(c.(*net.TCPConn))
			if err != nil {
				orig = "none(" + err.Error() + ")"
			}
			return fmt.Sprintf("port=%s orig=%s peer=%s\n", p, orig, c.RemoteAddr())
		})
	}
	fmt.Printf("standin proxy uid=%d gid=%d listening on %s\n", os.Getuid(), os.Getgid(), *ports)
	return waitSignal(lns)
}

func app(args []string) error {
	fs := flag.NewFlagSet("app", flag.ExitOnError)
	listen := fs.String("listen", ":9080", "address to listen on")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	go serve(ln, func(c net.Conn) string { return fmt.Sprintf("app %s local=%s\n", host, c.LocalAddr()) })
	fmt.Printf("standin app listening on %s\n", *listen)
	return waitSignal([]net.Listener{ln})
}

func serve(ln net.Listener, reply func(net.Conn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte(reply(c)))
		}()
	}
}

func waitSignal(lns []net.Listener) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	return nil
}

func dial(args []string) error {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "connect and read timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading from %s: %w", fs.Arg(0), err)
	}
	fmt.Print(line)
	return nil
}
