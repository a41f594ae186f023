// Package replay answers from recorded exchanges (cassettes), for tests and
// demos. A Recorder wraps any other connector and records what it answers;
// a Player answers the same requests again without any network.
package replay

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/moatproject/moat/internal/connectors"
)

// Limits of one cassette.
const (
	MaxExchanges = 10_000
	MaxBytes     = 64 << 20
)

// Version of the cassette format.
const Version = 1

// Cassette is the file: recorded exchanges, each under the key of its request.
type Cassette struct {
	Version   int        `json:"version"`
	Exchanges []Exchange `json:"exchanges"`
}

// Exchange is one recorded call.
type Exchange struct {
	// Key is Key(request): the request itself is not stored.
	Key      string              `json:"key"`
	Response connectors.Response `json:"response"`
}

// keyed is what a key covers, in a fixed order.
type keyed struct {
	Model       string               `json:"model"`
	Messages    []connectors.Message `json:"messages"`
	Schema      map[string]any       `json:"schema"`
	Labels      []string             `json:"labels"`
	MaxTokens   int                  `json:"maxTokens"`
	Temperature *float64             `json:"temperature"`
	// Examples decide a classification's answer too; omitted when there
	// are none, so the keys of cassettes recorded before they existed hold.
	Examples []connectors.Example `json:"examples,omitempty"`
}

// Key is the hex SHA-256 of the canonical JSON of what decides an answer:
// model, messages, schema, labels, max tokens, temperature and examples (object keys
// sorted, no HTML escaping, no extra whitespace).
func Key(req connectors.Request) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(keyed{
		Model: req.Model, Messages: req.Messages, Schema: req.Schema, Labels: req.Labels,
		MaxTokens: req.MaxTokens, Temperature: req.Temperature, Examples: req.Examples,
	})
	if err != nil {
		return "", fmt.Errorf("replay: key: request cannot be encoded: %w", err)
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return hex.EncodeToString(sum[:]), nil
}

// Load reads a cassette file; a missing file is an empty cassette when
// missingOK. Errors name the file.
func Load(path string, missingOK bool) (*Cassette, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && missingOK {
		return &Cassette{Version: Version}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and checks a cassette.
func Parse(data []byte) (*Cassette, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Cassette
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("corrupt: data after the cassette")
	}
	if c.Version != Version {
		return nil, fmt.Errorf("unsupported version %d (want %d)", c.Version, Version)
	}
	if len(c.Exchanges) > MaxExchanges {
		return nil, fmt.Errorf("more than %d exchanges", MaxExchanges)
	}
	for i, e := range c.Exchanges {
		if len(e.Key) != 2*sha256.Size {
			return nil, fmt.Errorf("corrupt: exchange %d: key is not a SHA-256", i)
		}
		if _, err := hex.DecodeString(e.Key); err != nil {
			return nil, fmt.Errorf("corrupt: exchange %d: key is not hex", i)
		}
	}
	return &c, nil
}

// encode renders a cassette, refusing one over the limits.
func (c *Cassette) encode() ([]byte, error) {
	if len(c.Exchanges) > MaxExchanges {
		return nil, fmt.Errorf("more than %d exchanges", MaxExchanges)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxBytes)
	}
	return data, nil
}

// save writes a cassette atomically: a temporary file beside it (mode
// 0600), synced, then renamed over it.
func (c *Cassette) save(path string) error {
	data, err := c.encode()
	if err != nil {
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replay: cassette %s: %w", path, err)
	}
	return nil
}
