// Exact numbers from the payload. JSON.parse turns every JSON number into an
// IEEE-754 double, which keeps 15 to 17 significant digits: 0.1234567890123456789
// comes back as 0.12345678901234568, and a cost such as 1.005 is stored as
// 1.00499999999999989..., which Number.prototype.toFixed(2) shows as "1.00".
// So the page parses the response with parseExact(), which keeps each number
// as the decimal text PostgreSQL wrote, and rounds that text to the cent
// (half away from zero, as PostgreSQL's round(numeric, 2)). Doubles are used
// only for the chart's bar heights.

/** A JSON number, kept as its decimal text, e.g. "0.000123456789012345678". */
export type Dec = string;
export type Exact = null | boolean | string | Dec | Exact[] | { [key: string]: Exact };

/** JSON.parse, except that numbers come back as their source text (strings). */
export function parseExact(text: string): unknown {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const fail = (what: string): never => {
    throw new SyntaxError(`payload: ${what} at offset ${i}`);
  };
  const value = (): unknown => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const key = str();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        obj[key] = value();
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        fail('expected "," or "}"');
      }
    }
    if (ch === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail('expected "," or "]"');
      }
    }
    if (ch === '"') return str();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail('unexpected character');
    i += m![0].length;
    return m![0];
  };
  const str = (): string => {
    // Find the closing quote (skipping escapes), then let JSON.parse decode it.
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** The decimal text as an integer count of 10^-scale units (BigInt). */
function toScaled(dec: Dec, scale: number): { units: bigint; exact: boolean } {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(String(dec).trim());
  if (!m) throw new RangeError(`not a decimal number: ${dec}`);
  const [, sign, int, frac = '', exp = '0'] = m;
  // digits x 10^(e - frac.length) in units of 10^-scale: shift by scale + e - frac.length
  const digits = BigInt(int + frac);
  const shift = scale + Number(exp) - frac.length;
  let units: bigint;
  let exact = true;
  if (shift >= 0) {
    units = digits * 10n ** BigInt(shift);
  } else {
    const div = 10n ** BigInt(-shift);
    units = digits / div;
    const rest = digits % div;
    exact = rest === 0n;
    if (rest * 2n >= div) units += 1n; // half away from zero (on the magnitude)
  }
  return { units: sign === '-' ? -units : units, exact };
}

/** dec rounded to `places` decimals, half away from zero, as plain text. */
export function roundDec(dec: Dec, places: number): string {
  const { units } = toScaled(dec, places);
  const neg = units < 0n;
  let s = (neg ? -units : units).toString().padStart(places + 1, '0');
  if (places > 0) s = `${s.slice(0, -places)}.${s.slice(-places)}`;
  return (neg && /[1-9]/.test(s) ? '-' : '') + s;
}

function group(int: string): string {
  return int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** "$1,234.57": dollars to the cent, rounded half away from zero. null: "n/a". */
export function usd(dec: Dec | null | undefined): string {
  if (dec === null || dec === undefined) return 'n/a';
  const r = roundDec(dec, 2);
  const neg = r.startsWith('-');
  const [int, frac] = (neg ? r.slice(1) : r).split('.');
  return `${neg ? '-' : ''}$${group(int)}.${frac}`;
}

/** "1,234,567": a count rounded to a whole number, with separators. */
export function count(dec: Dec | null | undefined): string {
  if (dec === null || dec === undefined) return 'n/a';
  const r = roundDec(dec, 0);
  return r.startsWith('-') ? `-${group(r.slice(1))}` : group(r);
}

/** "82.5%": a percentage to one decimal. */
export function percent(dec: Dec | null | undefined): string {
  if (dec === null || dec === undefined) return 'n/a';
  return `${roundDec(dec, 1)}%`;
}

/** A double for drawing (chart bar heights), never for showing money. */
export function approx(dec: Dec | null | undefined): number {
  return dec === null || dec === undefined ? 0 : Number(dec);
}
