//! Learning curves as PNG images, drawn without a plotting library or system fonts.
//!
//! The picture is 800×500 pixels on white: a framed plot area with grid lines, numeric
//! tick labels on both axes, one 2 px polyline per series in its own colour, a legend to the
//! right of the plot and the title above it. Text uses a built-in 5×7 bitmap font that has
//! digits, letters (drawn upper case), space and `- . , : _ + / ( ) = % [ ] * < > # '`;
//! any other character is drawn as `?`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One curve: `points` are `(environment step, return)` pairs, joined in the given order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Why a learning curve could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot encode the PNG {}: {source}", path.display())]
    Png {
        path: PathBuf,
        source: png::EncodingError,
    },
}

/// Draws `series` under `title` and writes the picture to `path` as an RGB PNG, replacing any
/// file there (the image is written next to it first, then renamed over it, so a reader never
/// sees half a file).
///
/// Points with a non-finite coordinate are skipped, and the finite points on either side of
/// them are joined. A series with a single finite point is drawn as a small square. The axes
/// span the finite points of all series, widened to round tick values; when all x (or all y)
/// are equal the axis is centred on that value. When no series has a finite point the image
/// still has its axes, legend and title, and says "no data". Colours repeat after ten
/// series; the legend lists as many series as fit beside the plot.
pub fn write_learning_curve(path: &Path, title: &str, series: &[Series]) -> Result<(), CurveError> {
    let canvas = draw(title, series);
    let mut temporary_path = path.as_os_str().to_owned();
    temporary_path.push(".tmp");
    let temporary_path = PathBuf::from(temporary_path);
    write_png(&temporary_path, &canvas)?;
    std::fs::rename(&temporary_path, path).map_err(|source| CurveError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_png(path: &Path, canvas: &Canvas) -> Result<(), CurveError> {
    let io_error = |source| CurveError::Io {
        path: path.to_owned(),
        source,
    };
    let png_error = |source| CurveError::Png {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io_error)?);
    let mut encoder = png::Encoder::new(&mut out, canvas.width as u32, canvas.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&canvas.rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    out.flush().map_err(io_error)
}

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const TEXT: Rgb = [40, 40, 40];
const FRAME: Rgb = [90, 90, 90];
const GRID: Rgb = [228, 228, 228];
const NOTE: Rgb = [150, 150, 150];

/// Matplotlib's "tab10" colours, one per series.
const SERIES_COLOURS: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const IMAGE_WIDTH: i32 = 800;
const IMAGE_HEIGHT: i32 = 500;
const PLOT_LEFT: i32 = 80;
const PLOT_RIGHT: i32 = 610;
const PLOT_TOP: i32 = 50;
const PLOT_BOTTOM: i32 = 440;
const LEGEND_LEFT: i32 = PLOT_RIGHT + 20;
const LEGEND_ROW_HEIGHT: i32 = 18;
const TICK_LENGTH: i32 = 5;
/// About how many tick intervals each axis gets.
const TICK_INTERVALS: f64 = 6.0;

fn draw(title: &str, series: &[Series]) -> Canvas {
    let finite_series: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|one| {
            let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
            one.points.iter().filter(finite).copied().collect()
        })
        .collect();
    let all_points = || finite_series.iter().flatten();
    let x_axis = Axis::spanning(all_points().map(|&(x, _)| x));
    let y_axis = Axis::spanning(all_points().map(|&(_, y)| y));

    let mut canvas = Canvas::new(IMAGE_WIDTH, IMAGE_HEIGHT, WHITE);
    let x_ticks = x_axis.as_ref().map_or_else(Vec::new, Axis::ticks);
    let y_ticks = y_axis.as_ref().map_or_else(Vec::new, Axis::ticks);
    let x_pixel = |x: f64| {
        x_axis
            .as_ref()
            .map_or(PLOT_LEFT, |axis| axis.to_pixel(x, PLOT_LEFT, PLOT_RIGHT))
    };
    let y_pixel = |y: f64| {
        y_axis
            .as_ref()
            .map_or(PLOT_BOTTOM, |axis| axis.to_pixel(y, PLOT_BOTTOM, PLOT_TOP))
    };

    for &(x, _) in &x_ticks {
        canvas.fill_rect(x_pixel(x), PLOT_TOP, 1, PLOT_BOTTOM - PLOT_TOP, GRID);
    }
    for &(y, _) in &y_ticks {
        canvas.fill_rect(PLOT_LEFT, y_pixel(y), PLOT_RIGHT - PLOT_LEFT, 1, GRID);
    }

    for (index, points) in finite_series.iter().enumerate() {
        let colour = series_colour(index);
        let pixels: Vec<(i32, i32)> = points
            .iter()
            .map(|&(x, y)| (x_pixel(x), y_pixel(y)))
            .collect();
        match pixels.as_slice() {
            [] => {}
            [(x, y)] => canvas.fill_rect(x - 2, y - 2, 5, 5, colour),
            _ => {
                for pair in pixels.windows(2) {
                    canvas.thick_line(pair[0], pair[1], colour);
                }
            }
        }
    }

    canvas.frame(PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_BOTTOM, FRAME);
    for (x, label) in &x_ticks {
        let x = x_pixel(*x);
        canvas.fill_rect(x, PLOT_BOTTOM, 1, TICK_LENGTH, FRAME);
        canvas.text(
            x - text_width(label, 1) / 2,
            PLOT_BOTTOM + TICK_LENGTH + 4,
            label,
            1,
            TEXT,
        );
    }
    for (y, label) in &y_ticks {
        let y = y_pixel(*y);
        canvas.fill_rect(PLOT_LEFT - TICK_LENGTH, y, TICK_LENGTH, 1, FRAME);
        let label_left = PLOT_LEFT - TICK_LENGTH - 4 - text_width(label, 1);
        canvas.text(label_left, y - GLYPH_HEIGHT / 2, label, 1, TEXT);
    }

    let x_label = "environment step";
    let plot_centre_x = (PLOT_LEFT + PLOT_RIGHT) / 2;
    canvas.text(
        plot_centre_x - text_width(x_label, 1) / 2,
        PLOT_BOTTOM + 30,
        x_label,
        1,
        TEXT,
    );
    let y_label = "return";
    let plot_centre_y = (PLOT_TOP + PLOT_BOTTOM) / 2;
    canvas.text_upward(
        20,
        plot_centre_y + text_width(y_label, 1) / 2,
        y_label,
        1,
        TEXT,
    );

    if x_axis.is_none() {
        let note = "no data";
        canvas.text(
            plot_centre_x - text_width(note, 2) / 2,
            plot_centre_y - GLYPH_HEIGHT,
            note,
            2,
            NOTE,
        );
    }

    draw_legend(&mut canvas, series);

    let title = truncate_to_width(title, IMAGE_WIDTH - 20, 2);
    canvas.text(
        (IMAGE_WIDTH - text_width(&title, 2)) / 2,
        15,
        &title,
        2,
        TEXT,
    );
    canvas
}

fn series_colour(index: usize) -> Rgb {
    SERIES_COLOURS[index % SERIES_COLOURS.len()]
}

/// One row per series: a short line in its colour and its label; "+N more" when they don't fit.
fn draw_legend(canvas: &mut Canvas, series: &[Series]) {
    let sample_length = 20;
    let label_left = LEGEND_LEFT + sample_length + 8;
    let rows_available = ((PLOT_BOTTOM - PLOT_TOP) / LEGEND_ROW_HEIGHT) as usize;
    let rows_for_series = if series.len() <= rows_available {
        series.len()
    } else {
        rows_available.saturating_sub(1)
    };
    let mut row_top = PLOT_TOP;
    for (index, one) in series.iter().take(rows_for_series).enumerate() {
        let middle = row_top + GLYPH_HEIGHT / 2;
        canvas.fill_rect(
            LEGEND_LEFT,
            middle - 1,
            sample_length,
            2,
            series_colour(index),
        );
        let label = truncate_to_width(&one.label, IMAGE_WIDTH - 4 - label_left, 1);
        canvas.text(label_left, row_top, &label, 1, TEXT);
        row_top += LEGEND_ROW_HEIGHT;
    }
    if rows_for_series < series.len() {
        let more = format!("+{} more", series.len() - rows_for_series);
        canvas.text(label_left, row_top, &more, 1, TEXT);
    }
}

/// The longest prefix of `text` whose rendering at `scale` fits in `max_width` pixels.
fn truncate_to_width(text: &str, max_width: i32, scale: i32) -> String {
    let max_chars = ((max_width + scale) / (GLYPH_ADVANCE * scale)).max(0) as usize;
    text.chars().take(max_chars).collect()
}

/// A linear axis from `low` to `high` (`low < high`), both multiples of `tick_step`.
struct Axis {
    low: f64,
    high: f64,
    tick_step: f64,
    format: TickFormat,
}

impl Axis {
    /// The axis over the given finite values; `None` when there are none.
    fn spanning(values: impl Iterator<Item = f64>) -> Option<Self> {
        let (min, max) = values.fold(None, |range: Option<(f64, f64)>, value| match range {
            None => Some((value, value)),
            Some((min, max)) => Some((min.min(value), max.max(value))),
        })?;
        let (min, max) = if min < max {
            (min, max)
        } else {
            let half_width = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
            (min - half_width, max + half_width)
        };
        let tick_step = nice_step((max - min) / TICK_INTERVALS);
        if !(tick_step.is_finite() && tick_step > 0.0) {
            // Spans near the limits of f64: no round ticks, only the ends.
            let format = TickFormat::for_range(min, max, max - min);
            return Some(Self {
                low: min,
                high: max,
                tick_step: f64::INFINITY,
                format,
            });
        }
        let low = (min / tick_step).floor() * tick_step;
        let high = (max / tick_step).ceil() * tick_step;
        let format = TickFormat::for_range(low, high, tick_step);
        Some(Self {
            low,
            high,
            tick_step,
            format,
        })
    }

    /// The tick values with their labels, from `low` to `high`.
    fn ticks(&self) -> Vec<(f64, String)> {
        if !self.tick_step.is_finite() {
            return [self.low, self.high]
                .into_iter()
                .map(|v| (v, self.format.label(v)))
                .collect();
        }
        let first = (self.low / self.tick_step).round() as i64;
        let last = (self.high / self.tick_step).round() as i64;
        // The step is about a sixth of the span, so this bound only guards against rounding.
        (first..=last)
            .take(4 * TICK_INTERVALS as usize)
            .map(|index| {
                let value = index as f64 * self.tick_step;
                (value, self.format.label(value))
            })
            .collect()
    }

    /// Maps `value` linearly so that `low` lands on pixel `at_low` and `high` on `at_high`.
    fn to_pixel(&self, value: f64, at_low: i32, at_high: i32) -> i32 {
        let fraction = (value - self.low) / (self.high - self.low);
        let pixel = f64::from(at_low) + fraction * f64::from(at_high - at_low);
        // `as` saturates and maps NaN to 0; the clamp keeps line drawing bounded.
        (pixel.round() as i32).clamp(-IMAGE_WIDTH, 2 * IMAGE_WIDTH)
    }
}

/// The round step (1, 2 or 5 times a power of ten) nearest to `raw_step` on a log scale.
fn nice_step(raw_step: f64) -> f64 {
    let power_of_ten = 10f64.powf(raw_step.log10().floor());
    let mantissa = raw_step / power_of_ten;
    // The thresholds are the geometric means of neighbouring steps: √2, √10, √50.
    let nice_mantissa = if mantissa < 1.414 {
        1.0
    } else if mantissa < 3.162 {
        2.0
    } else if mantissa < 7.071 {
        5.0
    } else {
        10.0
    };
    nice_mantissa * power_of_ten
}

/// How the labels of one axis are written, chosen once so that they share a unit.
enum TickFormat {
    /// `value / divisor` with `decimals` digits after the point, then `suffix` ("", "k", "M").
    Fixed {
        divisor: f64,
        suffix: &'static str,
        decimals: usize,
    },
    /// Scientific notation with `decimals` digits after the point, e.g. `2.5e-5`.
    Scientific { decimals: usize },
}

impl TickFormat {
    fn for_range(low: f64, high: f64, tick_step: f64) -> Self {
        let largest = low.abs().max(high.abs());
        let step_exponent = decimal_exponent(tick_step);
        if largest >= 1e9 || (largest < 1e-3 && largest > 0.0) || !tick_step.is_finite() {
            let decimals = (decimal_exponent(largest) - step_exponent).clamp(0, 6) as usize;
            return Self::Scientific { decimals };
        }
        let (divisor, suffix, divisor_exponent) = if largest >= 1e6 {
            (1e6, "M", 6)
        } else if largest >= 1e3 {
            (1e3, "k", 3)
        } else {
            (1.0, "", 0)
        };
        let decimals = (divisor_exponent - step_exponent).clamp(0, 9) as usize;
        Self::Fixed {
            divisor,
            suffix,
            decimals,
        }
    }

    fn label(&self, value: f64) -> String {
        if value == 0.0 {
            return "0".to_owned();
        }
        match *self {
            Self::Fixed {
                divisor,
                suffix,
                decimals,
            } => {
                format!("{:.decimals$}{suffix}", value / divisor)
            }
            Self::Scientific { decimals } => format!("{value:.decimals$e}"),
        }
    }
}

/// The exponent of the leading decimal digit of `value` (`floor(log10 |value|)`); 0 for 0.
fn decimal_exponent(value: f64) -> i32 {
    if value == 0.0 || !value.is_finite() {
        return 0;
    }
    // The nudge keeps exact powers of ten, computed with rounding error, on their exponent.
    (value.abs().log10() + 1e-9).floor() as i32
}

/// An RGB image being drawn; writes outside it are dropped.
struct Canvas {
    width: i32,
    height: i32,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: i32, height: i32, background: Rgb) -> Self {
        let pixel_count = (width.max(0) * height.max(0)) as usize;
        Self {
            width,
            height,
            rgb: background.repeat(pixel_count),
        }
    }

    fn put(&mut self, x: i32, y: i32, colour: Rgb) {
        if (0..self.width).contains(&x) && (0..self.height).contains(&y) {
            let offset = 3 * (y * self.width + x) as usize;
            self.rgb[offset..offset + 3].copy_from_slice(&colour);
        }
    }

    fn fill_rect(&mut self, left: i32, top: i32, width: i32, height: i32, colour: Rgb) {
        for y in top..top + height {
            for x in left..left + width {
                self.put(x, y, colour);
            }
        }
    }

    /// A 1 px rectangle outline with corners `(left, top)` and `(right, bottom)`.
    fn frame(&mut self, left: i32, top: i32, right: i32, bottom: i32, colour: Rgb) {
        self.fill_rect(left, top, right - left + 1, 1, colour);
        self.fill_rect(left, bottom, right - left + 1, 1, colour);
        self.fill_rect(left, top, 1, bottom - top + 1, colour);
        self.fill_rect(right, top, 1, bottom - top + 1, colour);
    }

    /// A 2 px thick line from `from` to `to` (Bresenham, each step a 2×2 dot).
    fn thick_line(&mut self, from: (i32, i32), to: (i32, i32), colour: Rgb) {
        let (mut x, mut y) = from;
        let delta_x = (to.0 - x).abs();
        let delta_y = -(to.1 - y).abs();
        let step_x = if x < to.0 { 1 } else { -1 };
        let step_y = if y < to.1 { 1 } else { -1 };
        let mut error = delta_x + delta_y;
        loop {
            self.fill_rect(x, y, 2, 2, colour);
            if (x, y) == to {
                break;
            }
            let doubled_error = 2 * error;
            if doubled_error >= delta_y {
                error += delta_y;
                x += step_x;
            }
            if doubled_error <= delta_x {
                error += delta_x;
                y += step_y;
            }
        }
    }

    /// Draws `text` left to right with its top-left corner at `(left, top)`.
    fn text(&mut self, left: i32, top: i32, text: &str, scale: i32, colour: Rgb) {
        for (index, character) in text.chars().enumerate() {
            let glyph_left = left + index as i32 * GLYPH_ADVANCE * scale;
            for (row, bits) in glyph(character).iter().enumerate() {
                for column in 0..GLYPH_WIDTH {
                    if bits >> (GLYPH_WIDTH - 1 - column) & 1 == 1 {
                        let x = glyph_left + column * scale;
                        let y = top + row as i32 * scale;
                        self.fill_rect(x, y, scale, scale, colour);
                    }
                }
            }
        }
    }

    /// Draws `text` bottom to top (turned a quarter anticlockwise) starting at `(left, bottom)`.
    fn text_upward(&mut self, left: i32, bottom: i32, text: &str, scale: i32, colour: Rgb) {
        for (index, character) in text.chars().enumerate() {
            let glyph_bottom = bottom - index as i32 * GLYPH_ADVANCE * scale;
            for (row, bits) in glyph(character).iter().enumerate() {
                for column in 0..GLYPH_WIDTH {
                    if bits >> (GLYPH_WIDTH - 1 - column) & 1 == 1 {
                        let x = left + row as i32 * scale;
                        let y = glyph_bottom - (column + 1) * scale;
                        self.fill_rect(x, y, scale, scale, colour);
                    }
                }
            }
        }
    }
}

const GLYPH_WIDTH: i32 = 5;
const GLYPH_HEIGHT: i32 = 7;
/// Glyph width plus one column of space.
const GLYPH_ADVANCE: i32 = GLYPH_WIDTH + 1;

/// Width in pixels of `text` drawn at `scale` (without the space after the last glyph).
fn text_width(text: &str, scale: i32) -> i32 {
    let count = text.chars().count() as i32;
    (count * GLYPH_ADVANCE - 1).max(0) * scale
}

/// The 5×7 bitmap of `character`, one byte per row, top first, bit 4 the leftmost column.
/// Lower case letters share the upper case glyphs; unknown characters get `?`.
fn glyph(character: char) -> [u8; 7] {
    match character.to_ascii_uppercase() {
        ' ' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '*' => [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '\'' => [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the PNG at `path`: width, height and RGB bytes.
    fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
        let file = io::BufReader::new(File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(frame.color_type, png::ColorType::Rgb);
        assert_eq!(frame.bit_depth, png::BitDepth::Eight);
        rgb.truncate(frame.buffer_size());
        (frame.width, frame.height, rgb)
    }

    fn count_pixels(rgb: &[u8], colour: Rgb) -> usize {
        rgb.chunks_exact(3).filter(|pixel| *pixel == colour).count()
    }

    /// Writes the curve into a fresh directory and decodes it back.
    fn render(title: &str, series: &[Series]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        write_learning_curve(&path, title, series).unwrap();
        let (width, height, rgb) = read_png(&path);
        assert_eq!((width, height), (IMAGE_WIDTH as u32, IMAGE_HEIGHT as u32));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
        rgb
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.to_owned(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn draws_each_series_in_its_colour() {
        let rising: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64 * 2e4, (i as f64).sqrt() * 300.0))
            .collect();
        let flat: Vec<(f64, f64)> = (0..50).map(|i| (i as f64 * 2e4, 500.0)).collect();
        let rgb = render(
            "Hopper-v5",
            &[series("sdac", &rising), series("sac", &flat)],
        );
        // Far more than the legend sample (20×2 px) alone: the polyline is there too.
        assert!(count_pixels(&rgb, SERIES_COLOURS[0]) > 500);
        assert!(count_pixels(&rgb, SERIES_COLOURS[1]) > 500);
        assert_eq!(count_pixels(&rgb, SERIES_COLOURS[2]), 0);
        assert!(count_pixels(&rgb, TEXT) > 100);
    }

    #[test]
    fn degenerate_inputs_still_make_a_picture() {
        let cases: Vec<Vec<Series>> = vec![
            vec![],
            vec![series("empty", &[])],
            vec![series("one point", &[(1000.0, 5.0)])],
            vec![series("flat", &[(0.0, 3.0), (10.0, 3.0), (20.0, 3.0)])],
            vec![series("zero", &[(0.0, 0.0), (0.0, 0.0)])],
            vec![series(
                "nan",
                &[
                    (f64::NAN, 1.0),
                    (1.0, f64::INFINITY),
                    (2.0, f64::NEG_INFINITY),
                ],
            )],
            vec![series("gap", &[(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)])],
            vec![series(
                "huge",
                &[(-f64::MAX, -f64::MAX), (f64::MAX, f64::MAX)],
            )],
            vec![series(
                "tiny",
                &[(0.0, 1e-300), (f64::MIN_POSITIVE, 2e-300)],
            )],
            vec![series("negative", &[(0.0, -1500.0), (5e6, -20.0)])],
            (0..40)
                .map(|i| series(&format!("run {i}"), &[(0.0, i as f64), (1.0, i as f64)]))
                .collect(),
        ];
        for case in cases {
            let rgb = render("degenerate", &case);
            assert!(
                count_pixels(&rgb, FRAME) > 1000,
                "axes missing for {case:?}"
            );
        }
    }

    #[test]
    fn a_single_point_is_visible() {
        let rgb = render("single", &[series("one", &[(7.0, 7.0)])]);
        assert!(count_pixels(&rgb, SERIES_COLOURS[0]) >= 40 + 25);
    }

    #[test]
    fn no_data_is_said() {
        let rgb = render("nothing yet", &[series("sdac", &[(f64::NAN, f64::NAN)])]);
        assert!(count_pixels(&rgb, NOTE) > 50);
        let rgb = render("something", &[series("sdac", &[(1.0, 2.0)])]);
        assert_eq!(count_pixels(&rgb, NOTE), 0);
    }

    #[test]
    fn tick_labels_share_a_unit() {
        let labels = |low: f64, high: f64| -> Vec<String> {
            let axis = Axis::spanning([low, high].into_iter()).unwrap();
            axis.ticks().into_iter().map(|(_, label)| label).collect()
        };
        assert_eq!(
            labels(0.0, 1e6),
            ["0", "0.2M", "0.4M", "0.6M", "0.8M", "1.0M"]
        );
        assert_eq!(
            labels(0.0, 3000.0),
            ["0", "0.5k", "1.0k", "1.5k", "2.0k", "2.5k", "3.0k"]
        );
        assert_eq!(labels(-1.0, 1.0), ["-1.0", "-0.5", "0", "0.5", "1.0"]);
        assert_eq!(
            labels(0.0, 6e-5),
            ["0", "1e-5", "2e-5", "3e-5", "4e-5", "5e-5", "6e-5"]
        );
    }

    #[test]
    fn nice_steps_are_one_two_or_five() {
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(1.3), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(40.0), 50.0);
        assert_eq!(nice_step(550.0), 500.0);
        assert_eq!(nice_step(800.0), 1000.0);
    }

    #[test]
    fn text_is_clipped_at_the_edges() {
        let mut canvas = Canvas::new(10, 10, WHITE);
        canvas.text(-3, 5, "long text beyond the canvas", 2, TEXT);
        canvas.thick_line((-5, -5), (20, 20), TEXT);
        assert!(count_pixels(&canvas.rgb, TEXT) > 0);
    }
}
