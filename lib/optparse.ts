/**
 * A command-line parser with the habits of Python's optparse, which websockify's launchers rely on: options
 * anywhere (also after positionals), `--opt=val` and `--opt val`, unique long-option prefixes (`--verb`),
 * combined short flags (`-vD`), a value glued to a short option (`-ofile`), and `--` ending the options.
 *
 * @module
 */

/** One option's spelling. `takesValue` options consume an argument; the others are flags. */
export interface OptionSpec {
  /** The long name without dashes, e.g. `log-file`. */
  long: string;
  /** A one-letter short name without the dash, e.g. `v`. */
  short?: string;
  takesValue: boolean;
  /**
   * Not one of Python websockify's options: a prefix it shares with one of those still means that one, so
   * launch scripts that abbreviate (`--log` for `--log-file`) work as they did.
   */
  extension?: boolean;
}

/** A usage error: the message is the one-line reason. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What was on the command line. Values are in the order given; flags map to occurrence counts. */
export interface ParsedArgs {
  values: Map<string, string[]>;
  flags: Map<string, number>;
  positionals: string[];
  /** The arguments after `--`, or undefined when there was no `--`. */
  afterTerminator: string[] | undefined;
}

/** Parses `argv` against `specs`. Throws UsageError with optparse's wording. */
export function parseArgs(argv: string[], specs: OptionSpec[]): ParsedArgs {
  const byLong = new Map(specs.map((spec) => [spec.long, spec]));
  const byShort = new Map(specs.filter((s) => s.short).map((spec) => [spec.short!, spec]));
  const result: ParsedArgs = {
    values: new Map(),
    flags: new Map(),
    positionals: [],
    afterTerminator: undefined,
  };
  const record = (spec: OptionSpec, value?: string) => {
    if (spec.takesValue) {
      const list = result.values.get(spec.long) ?? [];
      list.push(value!);
      result.values.set(spec.long, list);
    } else {
      result.flags.set(spec.long, (result.flags.get(spec.long) ?? 0) + 1);
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      result.afterTerminator = argv.slice(i + 1);
      break;
    }
    if (arg.startsWith("--")) {
      const equals = arg.indexOf("=");
      const typed = equals >= 0 ? arg.slice(2, equals) : arg.slice(2);
      const spec = matchLong(typed, byLong);
      if (spec.takesValue) {
        if (equals >= 0) {
          record(spec, arg.slice(equals + 1));
        } else if (i + 1 < argv.length) {
          record(spec, argv[++i]);
        } else {
          throw new UsageError(`--${spec.long} option requires an argument`);
        }
      } else {
        if (equals >= 0) throw new UsageError(`--${spec.long} option does not take a value`);
        record(spec);
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      // A cluster of short options: flags, the last of which may take the rest (or the next argument).
      for (let j = 1; j < arg.length; j++) {
        const spec = byShort.get(arg[j]);
        if (!spec) throw new UsageError(`no such option: -${arg[j]}`);
        if (!spec.takesValue) {
          record(spec);
          continue;
        }
        if (j + 1 < arg.length) {
          record(spec, arg.slice(j + 1));
        } else if (i + 1 < argv.length) {
          record(spec, argv[++i]);
        } else {
          throw new UsageError(`-${arg[j]} option requires an argument`);
        }
        break;
      }
    } else {
      result.positionals.push(arg);
    }
  }
  return result;
}

/** An exact long name, or the one option the prefix abbreviates. */
function matchLong(typed: string, byLong: Map<string, OptionSpec>): OptionSpec {
  const exact = byLong.get(typed);
  if (exact) return exact;
  const candidates = typed === ""
    ? []
    : [...byLong.keys()].filter((name) => name.startsWith(typed));
  if (candidates.length === 1) return byLong.get(candidates[0])!;
  // Python's meaning of a prefix wins over options added here since.
  const original = candidates.filter((name) => !byLong.get(name)!.extension);
  if (candidates.length > 1 && original.length === 1) return byLong.get(original[0])!;
  if (candidates.length > 1) {
    throw new UsageError(
      `ambiguous option: --${typed} (${candidates.map((c) => `--${c}`).join(", ")}?)`,
    );
  }
  throw new UsageError(`no such option: --${typed}`);
}
