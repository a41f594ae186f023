package detect

import (
	"reflect"
	"testing"
)

func TestResolveOverlapsAndCodePoints(t *testing.T) {
	t.Parallel()
	text := "é€ abc defg"
	// "abc" starts at byte 6 (é is 2 bytes, € is 3, then a space).
	spans := []span{
		{Type: "low", Start: 6, End: 9, Score: 0.6},
		{Type: "high", Start: 7, End: 14, Score: 0.9},
		{Type: "apart", Start: 0, End: 2, Score: 0.7},
	}
	got := toFindings(text, resolveOverlaps(nil, spans))
	want := []Finding{
		{Type: "apart", Start: 0, End: 1, Score: 0.7},
		{Type: "high", Start: 4, End: 11, Score: 0.9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
