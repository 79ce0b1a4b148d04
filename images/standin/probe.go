// standin probe: GET one path on every address a name resolves to, so that a caller sees each replica
// (in a Swarm overlay network, tasks.<service> has one address per running task) rather than the one a
// VIP or round-robin DNS happens to pick.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const probeBodyMax = 2000 // bytes of each response body kept

// probeResult is one output line. A lookup failure has no address; a request failure has status 0.
type probeResult struct {
	Target  string `json:"target"`
	Address string `json:"address"`
	Status  int    `json:"status"`
	Body    string `json:"body"`
	Error   string `json:"error"`
}

// probeTarget is NAME:PORT/PATH as given (raw) and taken apart; path starts with "/".
type probeTarget struct{ raw, name, port, path string }

func parseProbeTarget(s string) (probeTarget, error) {
	if strings.HasPrefix(s, "-") {
		return probeTarget{}, fmt.Errorf("bad argument %q: options go before the targets", s)
	}
	hostport, path, _ := strings.Cut(s, "/")
	name, port, err := net.SplitHostPort(hostport)
	if err != nil || name == "" {
		return probeTarget{}, fmt.Errorf("bad target %q: want NAME:PORT/PATH", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return probeTarget{}, fmt.Errorf("bad target %q: port %q is not 1-65535", s, port)
	}
	if _, err := url.ParseRequestURI("/" + path); err != nil {
		return probeTarget{}, fmt.Errorf("bad target %q: path: %v", s, err)
	}
	return probeTarget{raw: s, name: name, port: port, path: "/" + path}, nil
}

// runProbe is `standin probe [--timeout D] TARGET...`: one JSON line per (target, address), sorted by
// target then address. It returns 0 once the answers are printed, whatever they say; 2 on a usage error.
func runProbe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, "usage: standin probe [--timeout D] NAME:PORT/PATH...") }
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each lookup and each request")
	if err := fs.Parse(args); err != nil { // flag has named the bad option
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(os.Stderr, "standin probe: bad --timeout %s: want a positive duration\n", *timeout)
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var targets []probeTarget
	for _, a := range fs.Args() {
		t, err := parseProbeTarget(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "standin probe:", err)
			return 2
		}
		targets = append(targets, t)
	}

	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{DisableKeepAlives: true}, // no proxy: the address asked is the one answering
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is that replica's answer
		},
	}
	var (
		mu      sync.Mutex
		results []probeResult
		wg      sync.WaitGroup
	)
	add := func(r probeResult) { mu.Lock(); results = append(results, r); mu.Unlock() }
	for _, t := range targets {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			addrs, err := net.DefaultResolver.LookupHost(ctx, t.name)
			cancel()
			if err == nil && len(addrs) == 0 {
				err = fmt.Errorf("lookup %s: no addresses", t.name)
			}
			if err != nil {
				add(probeResult{Target: t.raw, Error: err.Error()})
				return
			}
			slices.Sort(addrs)
			for _, addr := range slices.Compact(addrs) {
				wg.Go(func() { add(probeGet(client, t, addr)) })
			}
		})
	}
	wg.Wait()

	slices.SortStableFunc(results, func(a, b probeResult) int {
		if c := strings.Compare(a.Target, b.Target); c != 0 {
			return c
		}
		x, errx := netip.ParseAddr(a.Address)
		y, erry := netip.ParseAddr(b.Address)
		if errx == nil && erry == nil {
			return x.Compare(y) // numerically, IPv4 first
		}
		return strings.Compare(a.Address, b.Address)
	})
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "standin probe:", err)
			return 1
		}
	}
	return 0
}

// probeGet sends GET PATH to addr:port with the Host header NAME:PORT, as a request by name would.
func probeGet(c *http.Client, t probeTarget, addr string) probeResult {
	r := probeResult{Target: t.raw, Address: addr}
	hostport := net.JoinHostPort(strings.ReplaceAll(addr, "%", "%25"), t.port) // an IPv6 zone, escaped for the URL
	req, err := http.NewRequest(http.MethodGet, "http://"+hostport+t.path, nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	req.Host = net.JoinHostPort(t.name, t.port)
	resp, err := c.Do(req)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, probeBodyMax))
	r.Body = string(body)
	if err != nil {
		r.Error = err.Error()
	}
	return r
}
