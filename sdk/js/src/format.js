// console.log's formatting, small: %s %d %i %f %j %o %O, then the rest
// joined by spaces; objects as JSON.

function show(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}` : String(value);
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

export function format(args) {
  if (args.length === 0) return '';
  let rest = args;
  let head = '';
  if (typeof args[0] === 'string' && args[0].includes('%')) {
    let i = 1;
    head = args[0].replace(/%([sdifjoO%])/g, (m, c) => {
      if (c === '%') return '%';
      if (i >= args.length) return m;
      const v = args[i++];
      if (c === 'd' || c === 'i') return String(c === 'i' ? parseInt(v) : Number(v));
      if (c === 'f') return String(parseFloat(v));
      if (c === 's') return typeof v === 'string' ? v : show(v);
      return show(v);
    });
    rest = args.slice(i);
    return [head, ...rest.map(show)].join(' ');
  }
  return rest.map(show).join(' ');
}
