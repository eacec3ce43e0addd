// supermel live page: the capture worklet.
//
// Runs in the AudioWorkletGlobalScope at the AudioContext's own rate (whatever the
// device gives: 44.1 or 48 kHz usually; Firefox refuses a fixed-rate context on a
// microphone). It downmixes the input to mono, resamples it to the server's rate
// with a windowed-sinc (Kaiser) low-pass interpolator that is phase-continuous
// across the 128-sample render quanta, and posts Float32Array chunks to the main
// thread (the buffer is transferred, not copied). The worklet has no WebSocket.
//
// Resampler: output sample n sits at input position t = n * inRate / outRate,
// tracked exactly with integers (no drift however long the stream). Its value is
// sum_j x[j] h(t - j) over the 2*half input samples around t, with
// h(d) = 2 fc sinc(2 fc d) kaiser(d / half): fc = 0.46 * min(1, outRate / inRate)
// cycles per input sample (the band edge just below the output's Nyquist frequency),
// `zeros` zero crossings on each side. h is tabulated at 1/phases of a sample and
// interpolated linearly.

function gcd(a, b) {
  while (b) { const t = a % b; a = b; b = t; }
  return a;
}

function besselI0(x) {
  let sum = 1, term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

class SincResampler {
  constructor(inRate, outRate, { zeros = 32, phases = 256, beta = 8.0, edge = 0.46 } = {}) {
    inRate = Math.round(inRate);
    outRate = Math.round(outRate);
    const g = gcd(inRate, outRate);
    this.num = inRate / g;  // input position of output n: n * num / den
    this.den = outRate / g;
    this.passthrough = inRate === outRate;
    const fc = edge * Math.min(1, outRate / inRate);
    this.half = Math.ceil(zeros / (2 * fc));
    this.phases = phases;
    const n = this.half * phases + 2;
    this.table = new Float32Array(n);
    const i0beta = besselI0(beta);
    for (let i = 0; i < n; i++) {
      const d = i / phases;
      if (d >= this.half) { this.table[i] = 0; continue; }
      const x = 2 * fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const r = d / this.half;
      this.table[i] = 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0beta);
    }
    // history: buf[i] is input sample base + i; the samples before the stream's start are zeros
    this.buf = new Float32Array(8192);
    this.base = -this.half;
    this.len = this.half;
    this.n = 0;  // next output index
  }

  push(x, emit) {
    if (this.passthrough) { for (let i = 0; i < x.length; i++) emit(x[i]); return; }
    if (this.len + x.length > this.buf.length) {
      const grown = new Float32Array(2 * (this.len + x.length));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(x, this.len);
    this.len += x.length;
    const { num, den, half, phases, table, buf } = this;
    const last = this.base + this.len - 1;  // newest input sample available
    for (;;) {
      const pos = this.n * num;
      const ip = Math.floor(pos / den);
      if (ip + half > last) break;
      const frac = (pos - ip * den) / den;
      let acc = 0;
      let bi = ip - half + 1 - this.base;
      for (let k = -half + 1; k <= half; k++, bi++) {
        const d = Math.abs(frac - k) * phases;
        const i0 = d | 0;
        const w = table[i0] + (d - i0) * (table[i0 + 1] - table[i0]);
        acc += buf[bi] * w;
      }
      emit(acc);
      this.n++;
    }
    // drop the samples no later output needs
    const keepFrom = Math.floor((this.n * num) / den) - half + 1;
    const drop = keepFrom - this.base;
    if (drop > 0) {
      buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.base += drop;
    }
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.inRate = sampleRate;  // the context's rate (AudioWorkletGlobalScope)
    this.outRate = o.outRate || sampleRate;
    this.chunk = Math.max(1, o.chunk || Math.round(this.outRate * 0.02));
    this.resampler = new SincResampler(this.inRate, this.outRate);
    this.out = new Float32Array(this.chunk);
    this.fill = 0;
    this.inputSamples = 0;
    this.running = true;
    this.mono = new Float32Array(128);
    this.emit = (v) => {
      this.out[this.fill++] = v;
      if (this.fill === this.out.length) this.post();
    };
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "stop") {
        this.running = false;
        this.post();
        this.port.postMessage({ type: "stopped", inputSamples: this.inputSamples });
      }
    };
  }

  post() {
    if (this.fill === 0) return;
    const buf = this.fill === this.out.length ? this.out : this.out.slice(0, this.fill);
    this.port.postMessage({ type: "audio", samples: buf }, [buf.buffer]);
    this.out = new Float32Array(this.chunk);
    this.fill = 0;
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    if (this.mono.length !== n) this.mono = new Float32Array(n);
    const mono = this.mono;
    if (input.length === 1) {
      mono.set(input[0]);
    } else {
      mono.fill(0);
      for (let c = 0; c < input.length; c++) {
        const ch = input[c];
        for (let i = 0; i < n; i++) mono[i] += ch[i];
      }
      const s = 1 / input.length;
      for (let i = 0; i < n; i++) mono[i] *= s;
    }
    this.inputSamples += n;
    this.resampler.push(mono, this.emit);
    return true;
  }
}

registerProcessor("supermel-capture", CaptureProcessor);
