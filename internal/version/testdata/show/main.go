// Command show prints version.String, for the version tests.
package main

import (
	"fmt"

	"github.com/trackrouter/trackrouter/internal/version"
)

func main() { fmt.Println(version.String("show")) }
