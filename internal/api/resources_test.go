package api

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store/pgtest"
)

func TestDecodeResourceIsCanonical(t *testing.T) {
	a, err := decodeResource(gateway.KindVendor, "v", []byte(`{"region":"eu","location":"on-premises"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeResource(gateway.KindVendor, "v", []byte(" {\"location\":\"on-premises\",\n\"name\":\"v\", \"region\":\"eu\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) || !strings.Contains(string(a), `"name":"v"`) {
		t.Fatalf("canonical forms differ:\n%s\n%s", a, b)
	}
	_, err = decodeResource(gateway.KindVendor, "v", []byte(`{"location":"on-premises"} {}`))
	var re *gateway.ResourceError
	if !errors.As(err, &re) {
		t.Fatalf("trailing data: %v", err)
	}
}

func FuzzDecodeResource(f *testing.F) {
	f.Add("Connector", `{"type":"http","vendor":"v","http":{"url":"https://x","body":{"n":1e400},"response":"a"}}`)
	f.Add("Model", `{"chain":[{"connector":"c","extra":1}],"environments":{"dev":[{}]}}`)
	f.Add("Vendor", `{"location":"on-premises","retentionDays":1.5}`)
	f.Fuzz(func(t *testing.T, kind, body string) {
		spec, err := decodeResource(kind, "n", []byte(body))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "api: ") && !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Fatalf("error without its package: %v", err)
			}
			return
		}
		// The canonical form decodes to itself.
		again, err := decodeResource(kind, "n", spec)
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, spec)
		}
		if string(again) != string(spec) {
			t.Fatalf("not canonical:\n%s\n%s", spec, again)
		}
		var m map[string]any
		if err := json.Unmarshal(spec, &m); err != nil || m["name"] != "n" {
			t.Fatalf("spec %s: %v", spec, err)
		}
	})
}

// TestApplyResourceOnPostgres: the same path on Postgres, where writers
// take a table lock; concurrent applies of dependent resources all end in
// a consistent set.
func TestApplyResourceOnPostgres(t *testing.T) {
	st := pgtest.Open(t)
	ctx := t.Context()
	now := time.Now().UTC()
	if _, err := ApplyResource(ctx, st, gateway.KindVendor, "v", []byte(`{"location":"on-premises"}`), now); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyResource(ctx, st, gateway.KindConnector, "c", []byte(`{"type":"local","vendor":"v"}`), now); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		_, errs[0] = ApplyResource(ctx, st, gateway.KindModel, "m", []byte(`{"chain":[{"connector":"c"}]}`), now)
	})
	wg.Go(func() { errs[1] = DeleteResource(ctx, st, gateway.KindConnector, "c") })
	wg.Wait()
	stored, err := st.ListResources(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	all, err := DecodeResources(stored)
	if err != nil {
		t.Fatal(err)
	}
	if err := all.Check(); err != nil {
		t.Fatalf("after concurrent apply (%v) and delete (%v) the set is inconsistent: %v", errs[0], errs[1], err)
	}
	if errs[0] != nil && errs[1] != nil {
		t.Fatalf("both failed: %v / %v", errs[0], errs[1])
	}
	var inUse *InUseError
	if err := DeleteResource(ctx, st, gateway.KindVendor, "v"); errs[1] == nil && err != nil || errs[1] != nil && !errors.As(err, &inUse) {
		t.Fatalf("delete vendor: %v", err)
	}
}
