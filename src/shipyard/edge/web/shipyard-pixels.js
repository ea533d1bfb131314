// Pictures as the server makes them (src/shipyard/processing/image.py, with Pillow): turned upright,
// converted to grey or RGB, resized (both sides, or the shorter one with the aspect ratio kept) with
// Pillow's filters and its fixed-point rounding, and cropped at the centre (padded with black). What
// comes out is what the graph takes: uint8 pixels [1, height, width, channels]. The graph does the rest
// of the recipe (scale, mean and std, inversion, channel order, layout), here as on the server.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's Resample.c
const ONE = 2 ** PRECISION_BITS;

const sinc = (x) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));
const FILTERS = {
  bilinear: [1, (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0)],
  bicubic: [
    2,
    (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  ],
  lanczos: [3, (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)],
};

/** A picture (a File or Blob) as RGBA ImageData, decoded by the browser: upright as its EXIF says, its
 * colours as stored (no colour management, as Pillow). */
export async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    imageOrientation: "from-image",
    premultiplyAlpha: "none",
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

/** RGBA ImageData as the graph's pixels, as `recipe` (model.json's "image") says:
 * {data: Uint8Array, dims: [1, height, width, channels]}. */
export function pixels(image, recipe) {
  const depth = recipe.channels === "L" ? 1 : 3;
  let picture = { data: converted(image, depth), width: image.width, height: image.height, depth };
  const size = resizedSize(picture.width, picture.height, recipe.resize);
  if (size !== null && (size[0] !== picture.width || size[1] !== picture.height)) {
    picture = resized(picture, size[0], size[1], recipe.resample || "bilinear");
  }
  if (recipe.center_crop) picture = cropped(picture, recipe.center_crop[0], recipe.center_crop[1]);
  if (picture.width !== recipe.width || picture.height !== recipe.height) {
    const made = `${picture.width}x${picture.height}`;
    throw new Error(`the recipe made ${made} pixels, the model takes ${recipe.width}x${recipe.height}`);
  }
  return { data: picture.data, dims: [1, picture.height, picture.width, depth] };
}

/** Pillow's convert("L") (ITU-R 601-2 luma, in its fixed point) or convert("RGB") (alpha dropped). */
function converted(image, depth) {
  const rgba = image.data;
  const count = image.width * image.height;
  const out = new Uint8Array(count * depth);
  for (let i = 0; i < count; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (depth === 1) {
      out[i] = Math.floor((r * 19595 + g * 38470 + b * 7471 + 0x8000) / 65536);
    } else {
      out[3 * i] = r;
      out[3 * i + 1] = g;
      out[3 * i + 2] = b;
    }
  }
  return out;
}

/** The size a picture is resized to: [width, height], the shorter side to a number (torchvision's
 * Resize, as the server does), or null (no resize). */
function resizedSize(width, height, resize) {
  if (resize === null || resize === undefined) return null;
  if (Array.isArray(resize)) return resize;
  if (width <= height) return [resize, Math.trunc((resize * height) / width)];
  return [Math.trunc((resize * width) / height), resize];
}

function resized(picture, width, height, resample) {
  if (resample === "nearest") return nearest(picture, width, height);
  const filter = FILTERS[resample];
  if (!filter) throw new Error(`unknown resample ${resample}`);
  // Pillow's two passes, each rounded to uint8: horizontal then vertical, or (Pillow 13) vertical
  // first when the height shrinks by more than twice as many pixels as the width does
  const horizontal = coefficients(picture.width, width, filter);
  const vertical = coefficients(picture.height, height, filter);
  if (width === picture.width) return pass(picture, vertical, width, height, 0, false);
  if (height === picture.height) return pass(picture, horizontal, width, height, 0, true);
  if (height < picture.height && picture.height - height > 2 * (picture.width - width)) {
    const first = horizontal.bounds[0];
    const last = horizontal.bounds[2 * width - 2] + horizontal.bounds[2 * width - 1];
    for (let i = 0; i < width; i++) horizontal.bounds[2 * i] -= first;
    const columns = pass(picture, vertical, last - first, height, first, false);
    return pass(columns, horizontal, width, height, 0, true);
  }
  const first = vertical.bounds[0];
  const last = vertical.bounds[2 * height - 2] + vertical.bounds[2 * height - 1];
  for (let i = 0; i < height; i++) vertical.bounds[2 * i] -= first;
  const rows = pass(picture, horizontal, width, last - first, first, true);
  return pass(rows, vertical, width, height, 0, false);
}

/** Pillow's precompute_coeffs and normalize_coeffs_8bpc: for each output pixel, the first input pixel
 * it reads, how many, and their weights in fixed point. */
function coefficients(inSize, outSize, [filterSupport, filter]) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterSupport * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const ss = 1 / filterScale;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < count; x++) {
      const w = filter((x + xmin - center + 0.5) * ss);
      weights[xx * ksize + x] = w;
      total += w;
    }
    for (let x = 0; x < count; x++) {
      const w = total !== 0 ? weights[xx * ksize + x] / total : weights[xx * ksize + x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = count;
  }
  return { bounds, weights, ksize };
}

/** One pass of a resize: along rows (`horizontal`) or columns, reading from the row (or column)
 * `offset` on, into a width x height picture. */
function pass(picture, { bounds, weights, ksize }, width, height, offset, horizontal) {
  const { data, depth } = picture;
  const stride = picture.width * depth;
  const out = new Uint8Array(width * height * depth);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = horizontal ? x : y;
      const first = bounds[2 * at], count = bounds[2 * at + 1], k = at * ksize;
      for (let c = 0; c < depth; c++) {
        let sum = ONE / 2;
        if (horizontal) {
          const row = (y + offset) * stride + c;
          for (let i = 0; i < count; i++) sum += data[row + (first + i) * depth] * weights[k + i];
        } else {
          const column = (x + offset) * depth + c;
          for (let i = 0; i < count; i++) sum += data[(first + i) * stride + column] * weights[k + i];
        }
        out[(y * width + x) * depth + c] = sum >= 256 * ONE ? 255 : sum <= 0 ? 0 : Math.floor(sum / ONE);
      }
    }
  }
  return { data: out, width, height, depth };
}

/** Pillow's nearest resize (an affine scaling: the input pixel under each output pixel's centre, the
 * positions summed as Pillow sums them). */
function nearest(picture, width, height) {
  const { data, depth } = picture;
  const sx = picture.width / width, sy = picture.height / height;
  const columns = new Int32Array(width);
  let position = sx * 0.5;
  for (let x = 0; x < width; x++, position += sx) {
    columns[x] = Math.min(Math.trunc(position), picture.width - 1);
  }
  const out = new Uint8Array(width * height * depth);
  position = sy * 0.5;
  for (let y = 0; y < height; y++, position += sy) {
    const row = Math.min(Math.trunc(position), picture.height - 1) * picture.width;
    for (let x = 0; x < width; x++) {
      const from = (row + columns[x]) * depth;
      for (let c = 0; c < depth; c++) out[(y * width + x) * depth + c] = data[from + c];
    }
  }
  return { data: out, width, height, depth };
}

/** The centre width x height; outside the picture is black (Pillow's crop, as the server does). */
function cropped(picture, width, height) {
  const { data, depth } = picture;
  const left = roundHalfEven((picture.width - width) / 2);
  const top = roundHalfEven((picture.height - height) / 2);
  const out = new Uint8Array(width * height * depth);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= picture.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= picture.width) continue;
      const from = (sy * picture.width + sx) * depth;
      for (let c = 0; c < depth; c++) out[(y * width + x) * depth + c] = data[from + c];
    }
  }
  return { data: out, width, height, depth };
}

/** Python's round(): halves to the even neighbour. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
