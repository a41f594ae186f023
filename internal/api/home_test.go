package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHomePageEscapesWhatItShows(t *testing.T) {
	t.Parallel()
	h := &handlers{Deps: Deps{Version: `1.0<b>`}}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = `example.test"><script>alert(1)</script>`
	w := httptest.NewRecorder()
	h.home(w, r)
	body := w.Body.String()
	for _, want := range []string{
		"<h1>Moat 1.0&lt;b&gt;</h1>",
		"http://example.test&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;/api/v1/projects",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "{{") {
		t.Errorf("the page shows a raw value or an unfilled blank:\n%s", body)
	}
}
