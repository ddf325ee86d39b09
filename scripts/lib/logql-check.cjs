#!/usr/bin/env node
// logql-check.cjs — parses every LogQL expression of Grafana dashboards with Grafana's own
// grammar (@grafana/lezer-logql, the parser of Grafana's Loki query editor) and fails on any
// syntax error. Usage: node logql-check.cjs DASHBOARD.json...
// A query is LogQL when its panel's or target's datasource is of type `loki` (uid `loki`).
// Grafana variables are substituted first, as Grafana does before sending a query.
'use strict';

const fs = require('fs');
const { parser } = require('@grafana/lezer-logql');

const NAME = 'logql-check';

// Grafana's built-in interval variables become a duration; `$var`, `${var}` and `[[var]]`
// inside label matchers and line filters are strings and parse as they are.
function substitute(expr) {
  return expr.replace(/\$__(auto|interval|rate_interval|range)(_ms|_s)?\b/g, '1m');
}

// Returns the first syntax error of `expr` as "position: text", or null.
function syntaxError(expr) {
  const tree = parser.parse(expr);
  let error = null;
  tree.iterate({
    enter(node) {
      if (error === null && node.type.isError) {
        error = `at ${node.from}: near ${JSON.stringify(expr.slice(node.from, node.from + 20))}`;
      }
      return error === null;
    },
  });
  return error;
}

function isLoki(ds) {
  return ds && (ds.type === 'loki' || ds.uid === 'loki');
}

// Collects [where, expr] of every Loki target in the dashboard (rows may nest panels).
function lokiQueries(dashboard, file) {
  const found = [];
  const walk = (panels) => {
    for (const panel of panels || []) {
      for (const target of panel.targets || []) {
        const ds = target.datasource || panel.datasource;
        if (isLoki(ds) && typeof target.expr === 'string') {
          found.push([`${file}: panel "${panel.title}" ${target.refId}`, target.expr]);
        }
      }
      walk(panel.panels);
    }
  };
  walk(dashboard.panels);
  for (const v of (dashboard.templating && dashboard.templating.list) || []) {
    if (isLoki(v.datasource) && v.query && typeof v.query.stream === 'string' && v.query.stream) {
      found.push([`${file}: variable "${v.name}"`, v.query.stream]);
    }
  }
  return found;
}

function main(files) {
  if (files.length === 0 || files.includes('--help')) {
    process.stderr.write('usage: node logql-check.cjs DASHBOARD.json...\n');
    return files.length === 0 ? 64 : 0;
  }
  // The check must be able to fail: a broken query has to be reported.
  if (syntaxError('sum(rate({service="x"} | json [5m])') === null) {
    process.stderr.write(`${NAME}: the parser accepted a broken query; refusing to vouch\n`);
    return 1;
  }
  let failures = 0;
  let checked = 0;
  for (const file of files) {
    const dashboard = JSON.parse(fs.readFileSync(file, 'utf8'));
    for (const [where, expr] of lokiQueries(dashboard, file)) {
      checked += 1;
      const error = syntaxError(substitute(expr));
      if (error !== null) {
        failures += 1;
        process.stderr.write(`${NAME}: ${where}: ${error}\n  ${expr}\n`);
      }
    }
  }
  process.stdout.write(`${NAME}: ${checked} LogQL expressions, ${failures} with errors\n`);
  return failures === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
