package vault

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// Benchmarks run on a SQLite store in a temporary directory, with an
// in-memory hook:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/vault/
//
// MOAT_VAULT_BENCH_SECRETS sets how many secrets BenchmarkRewrap rewraps per
// iteration (default 1000).

func BenchmarkResolveWarm(b *testing.B) {
	e := newEnv(b)
	set(b, e.v, "prod", "K", "bench-value", bound("c", "api.example.com"))
	a := Access{RunID: "run_1", Workflow: "w", Environment: "prod", Connector: "c", Host: "api.example.com"}
	resolve(b, e.v, a, "prod", "K")
	b.ReportAllocs()
	for b.Loop() {
		v, err := e.v.Resolve(b.Context(), a, "prod", "K")
		if err != nil {
			b.Fatal(err)
		}
		zero(v)
		e.hook.take()
	}
}

// BenchmarkResolveCold empties the data key cache before each Resolve, so
// each one unwraps its data key under the key term.
func BenchmarkResolveCold(b *testing.B) {
	e := newEnv(b)
	set(b, e.v, "prod", "K", "bench-value", bound("c", "api.example.com"))
	a := Access{RunID: "run_1", Workflow: "w", Environment: "prod", Connector: "c", Host: "api.example.com"}
	resolve(b, e.v, a, "prod", "K")
	b.ReportAllocs()
	for b.Loop() {
		e.v.cache.purge()
		v, err := e.v.Resolve(b.Context(), a, "prod", "K")
		if err != nil {
			b.Fatal(err)
		}
		zero(v)
		e.hook.take()
	}
}

func BenchmarkRewrap(b *testing.B) {
	n := 1000
	if s := os.Getenv("MOAT_VAULT_BENCH_SECRETS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("MOAT_VAULT_BENCH_SECRETS=%q", s)
		}
	}
	e := newEnv(b)
	for i := range n {
		set(b, e.v, "prod", fmt.Sprintf("S%06d", i), fmt.Sprintf("value-%06d", i), bound("c"))
	}
	total := 0
	for b.Loop() {
		b.StopTimer()
		if _, err := e.v.RotateKey(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := e.v.Rewrap(b.Context(), RewrapOptions{})
		if err != nil || res.Rewrapped != n {
			b.Fatalf("rewrap: %+v %v", res, err)
		}
		total += res.Rewrapped
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "secrets/s")
}

// BenchmarkDecrypt measures the cryptography alone (no database read, no
// hook): a cached data key against an unwrap per call.
func BenchmarkDecrypt(b *testing.B) {
	e := newEnv(b)
	set(b, e.v, "prod", "K", "bench-value", bound("c"))
	s, err := e.store.GetSecret(b.Context(), "prod", "K")
	if err != nil {
		b.Fatal(err)
	}
	for _, warm := range []bool{true, false} {
		b.Run(fmt.Sprintf("warm=%v", warm), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !warm {
					e.v.cache.purge()
				}
				v, err := e.v.open(b.Context(), s)
				if err != nil {
					b.Fatal(err)
				}
				zero(v)
			}
		})
	}
}
