// Command standin-placeholder is a minimal stand-in for test/standin (owned by
// the plug-in engineer, contract in docs/contract.md), used by the cluster
// scripts only while test/standin does not exist yet. Same subcommands:
//
//	proxy --ports 15001,15006   one line per connection: port=.. orig=.. peer=..
//	app --listen :9080          writes "app <hostname>\n" and closes
//	dial <ip:port>              prints what the peer wrote
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

const soOriginalDst = 80

func origDst(c net.Conn) string {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return "?"
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return "?"
	}
	out := "?"
	_ = raw.Control(func(fd uintptr) {
		// sockaddr_in fits in the 16 bytes of an IPv6Mreq
		m, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, soOriginalDst)
		if err != nil {
			return
		}
		b := m.Multiaddr
		port := int(b[2])<<8 | int(b[3])
		out = fmt.Sprintf("%d.%d.%d.%d:%d", b[4], b[5], b[6], b[7], port)
	})
	return out
}

func serve(addr string, reply func(net.Conn, string) string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.WriteString(c, reply(c, port))
		}()
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standin proxy --ports P,P | app --listen ADDR | dial IP:PORT")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "proxy":
		ports := "15001,15006"
		if len(os.Args) > 3 && os.Args[2] == "--ports" {
			ports = os.Args[3]
		}
		errc := make(chan error)
		for _, p := range strings.Split(ports, ",") {
			go func(p string) {
				errc <- serve(":"+p, func(c net.Conn, port string) string {
					return fmt.Sprintf("port=%s orig=%s peer=%s\n", port, origDst(c), c.RemoteAddr())
				})
			}(p)
		}
		fmt.Fprintln(os.Stderr, <-errc)
		os.Exit(1)
	case "app":
		addr := ":9080"
		if len(os.Args) > 3 && os.Args[2] == "--listen" {
			addr = os.Args[3]
		}
		h, _ := os.Hostname()
		fmt.Fprintln(os.Stderr, serve(addr, func(net.Conn, string) string { return "app " + h + "\n" }))
		os.Exit(1)
	case "dial":
		if len(os.Args) < 3 {
			os.Exit(2)
		}
		c, err := net.DialTimeout("tcp", os.Args[2], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		fmt.Print(string(b))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		os.Exit(2)
	}
}
