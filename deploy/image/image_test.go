package image

import (
	"strings"
	"testing"
)

func TestBuildRefusesWhatIsNotAnImage(t *testing.T) {
	tests := []struct {
		name   string
		binary []byte
		info   Info
		want   string
	}{
		{"no version", []byte("\x7fELF...."), Info{}, "Info.Version is required"},
		{"not ELF", []byte("MZ\x90\x00"), Info{Version: "1"}, "not a Linux ELF executable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(tc.binary, tc.info); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The same binary and Info give the same image, byte for byte: a
// rebuild in CI does not churn the registry.
func TestBuildIsReproducible(t *testing.T) {
	bin := []byte("\x7fELF and the rest of a binary")
	digest := func() string {
		img, err := Build(bin, Info{Version: "1.2.3", Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	if a, b := digest(), digest(); a != b {
		t.Errorf("digests differ: %s, %s", a, b)
	}
}
