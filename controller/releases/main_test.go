package releases

import (
	"os"
	"testing"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

func TestMain(m *testing.M) { os.Exit(testcluster.Main(m)) }
