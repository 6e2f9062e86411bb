defmodule Tether do
  @moduledoc """
  tether frames from Elixir: write what Python reads, read what Python writes.

  A frame is a 64-byte header, ETF metadata and a payload (see `docs/format.md`).
  `encode/2` writes etf frames (any term) or raw frames (a binary); `tensor/3`
  writes an ndarray frame from an Nx-style binary; `decode/1` reads every
  frame kind Python writes except pickle.

      iex> frame = Tether.encode(%{"id" => 1, tags: [:a]})
      iex> Tether.decode(frame)
      {:ok, %{"id" => 1, tags: [:a]}}

  ## Tensors

  An ndarray frame (from Python, or embedded in a worker's reply) decodes to
  a map with these fields:

    * `:type`: the Nx type, e.g. `{:f, 32}`, `{:s, 64}`, `{:u, 8}`, `{:c, 64}`,
      `{:bf, 16}`; `:undefined` when Nx has no such type (see `:dtype`);
    * `:shape`: a tuple of dimensions, `{}` for a 0-d array;
    * `:data`: the elements as one binary, in the dtype's byte order
      (little-endian for every dtype Python writes by default), no padding;
    * `:order`: `"C"` (row-major) or `"F"` (column-major), the order of `:data`.
      Worker replies are always `"C"`: Python sends arrays that are not
      C-contiguous (e.g. `arr.T`) in row-major order, with the same values;
    * `:dtype`: NumPy's dtype string, e.g. `"<f4"`, or a list for structured dtypes.

  So with `order: "C"`, `Nx.from_binary(data, type) |> Nx.reshape(shape)` is
  the same tensor. `tensor/3` writes the reverse: a native-endian, row-major
  binary such as `Nx.to_binary/1` returns.

  ## Floats

  NaN and the infinities travel as the atoms `:nan`, `:infinity` and
  `:neg_infinity` (as Nx writes them), both ways: Python's `float("nan")`
  arrives as `:nan`, and `:nan` in arguments arrives as `float("nan")`. In a
  frame or a stream this node writes, they stay atoms for Python unless it is
  written with `float_atoms: true` (`encode/2`, `Tether.Stream.write/3`).

  ## Tables

  A worker's reply holds a table (a `pyarrow.Table`, a DataFrame) as Arrow
  IPC stream bytes by default (`Explorer.DataFrame.load_ipc_stream/1` reads
  them), or, with the call option `tables: :rows | :columns`, as a list of
  maps or a map of lists. `table/1` marks an argument to arrive in Python as
  a `pyarrow.Table`.
  """

  @typedoc "An Nx tensor type: `{:f, 32}`, `{:s, 64}`, `{:u, 8}`, `{:c, 64}`, `{:bf, 16}`, ..."
  @type nx_type :: {:f | :s | :u | :c | :bf, pos_integer()}

  @doc """
  Encode a term as a frame.

  Options: `format: :etf | :raw`, `compression: :none | :gzip` and `level: 0..9`
  (the frame's payload compression, which Python reads too), `compressed: boolean`
  (term_to_binary's own compression of an etf payload), `checksum: :crc32 | :none`,
  `metadata: map`, `type_versions`, `float_atoms: true` (Python reads `:nan`,
  `:infinity` and `:neg_infinity` in the term as floats), `parent` and `step`
  (see `:tether.encode/2`).
  An unknown option or a bad value raises `ArgumentError` naming it. Returns
  iodata: `IO.iodata_to_binary/1` it for `byte_size/1` or pattern matching.
  Metadata is plain data that Python and every node read
  without creating atoms: atom keys and values other than `true`, `false` and
  `nil` are written as strings, as JSON encoders do (`%{source: :cam}` reads
  back as `%{"source" => "cam"}`); pids, references, ports and funs raise
  `ArgumentError` naming their path.

      iex> Tether.encode(<<1, 2, 3>>, format: :raw) |> Tether.decode()
      {:ok, <<1, 2, 3>>}
  """
  @spec encode(term(), keyword() | map()) :: iodata()
  def encode(term, opts \\ []) do
    :tether.encode(term, opts)
  catch
    :error, {:badarg, {:bad_option, _, _} = reason} -> Tether.Options.raise!(:encode, opts, reason)
    :error, {:badarg, reason} -> badarg!(reason)
  end

  @doc """
  Decode a frame: `{:ok, term}` or `{:error, reason}`.

  ndarray frames decode to `%{type: {:f, 32}, shape: {2, 3}, data: binary}`
  where `data` is a sub-binary of the frame; Arrow frames to their IPC stream
  bytes (`Explorer.DataFrame.load_ipc_stream/1` reads them).

  Options: `verify: boolean` (the payload checksum; header and metadata are
  always checked), `safe: boolean` (default true: no new atoms; false only for
  trusted peers), `max_uncompressed_size: bytes` (what a compressed payload may
  inflate to, checked before inflating; default 4 GiB, as Python's `tether.Limits`).
  Whatever the bytes, the answer is `{:ok, _}` or `{:error, _}`, never a raise.

      iex> frame = Tether.encode(:binary.copy(<<0>>, 100_000), compression: :gzip)
      iex> Tether.decode(frame, max_uncompressed_size: 1000)
      {:error, {:too_large, 100006, 1000}}
      iex> Tether.decode("junk")
      {:error, :not_a_tether_frame}
      iex> Tether.decode(:junk) |> elem(1) |> elem(0)
      :not_a_frame
  """
  @spec decode(iodata(), keyword() | map()) :: {:ok, term()} | {:error, term()}
  def decode(frame, opts \\ []) do
    case :tether.decode(frame, opts) do
      {:error, {:bad_option, _, _} = reason} -> {:error, Tether.Options.reword(:decode, opts, reason)}
      result -> result
    end
  end

  @doc """
  Header and metadata of a frame, without touching its payload: `{:ok, map}` or
  `{:error, reason}` whatever the bytes.

      iex> frame = Tether.encode(List.duplicate(:ok, 1000), compression: :gzip)
      iex> {:ok, info} = Tether.inspect(frame)
      iex> {info.format, info.compression, info.metadata["format"]}
      {:etf, :gzip, "etf"}
  """
  @spec inspect(iodata()) :: {:ok, map()} | {:error, term()}
  def inspect(frame), do: :tether.inspect(frame)

  @doc """
  An ndarray frame from a native-endian, row-major binary (what `Nx.to_binary/1` returns).

      iex> {:ok, t} = Tether.tensor(<<1.0::float-32-native, 2.0::float-32-native>>, {:f, 32}, {2}) |> Tether.decode()
      iex> {t.type, t.shape}
      {{:f, 32}, {2}}
  """
  @spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()]) :: binary()
  def tensor(data, type, shape) do
    :tether.tensor(data, type, shape) |> IO.iodata_to_binary()
  catch
    :error, {:badarg, reason} -> badarg!(reason)
  end

  @doc """
  Mark rows (a list of maps) or columns (a map of equal-length lists) as a
  table: as an argument of `Tether.Worker.call/5` or `Tether.Pool.call/5` it
  arrives in Python as a `pyarrow.Table`. `:nan`, `:infinity` and
  `:neg_infinity` in a column of numbers arrive as floats, as anywhere else in
  a call. Anything else raises `ArgumentError`.

      iex> {:"$tether_table", etf} = Tether.table([%{"id" => 1}, %{"id" => 2}])
      iex> :erlang.binary_to_term(etf)
      [%{"id" => 1}, %{"id" => 2}]
      iex> match?({:"$tether_table", _}, Tether.table(%{"id" => [1, 2]}))
      true
  """
  @spec table([map()] | %{optional(term()) => list()}) :: {:"$tether_table", binary()}
  def table(rows_or_columns) do
    :tether_embed.table(rows_or_columns)
  catch
    :error, :badarg ->
      raise ArgumentError,
            "Tether.table/1 takes rows (a list of maps) or columns (a map of equal-length lists), got: " <>
              Kernel.inspect(rows_or_columns, limit: 5)
  end

  @doc """
  Mark a binary (or iodata) to arrive in Python as `bytes`, exactly as it is.

  An unmarked binary argument that is one whole tether frame (what
  `encode/2` and `tensor/3` return) arrives in Python decoded, so frames can
  be passed as values. Marked, it arrives as the frame's bytes: for a handler
  that stores or forwards frames. Large ones arrive as a read-only
  `memoryview`, as other large binaries do, and with `binaries: :str` a
  marked binary is still `bytes`. Anything but a binary or iodata raises
  `ArgumentError`. (A worker whose tether predates the marker refuses the call
  with `{:error, {:bad_request, message}}`; `:tether_args.bytes/1` from Erlang.)

      iex> frame = IO.iodata_to_binary(Tether.encode([1, 2]))
      iex> {:"$tether_bytes", ^frame} = Tether.bytes(frame)
      iex> Tether.bytes(["ab", ?c])
      {:"$tether_bytes", "abc"}
  """
  @spec bytes(iodata()) :: {:"$tether_bytes", binary()}
  def bytes(data) when is_binary(data), do: :tether_args.bytes(data)

  def bytes(data) when is_list(data) do
    data |> IO.iodata_to_binary() |> :tether_args.bytes()
  rescue
    ArgumentError -> bytes_badarg!(data)
  end

  def bytes(data), do: bytes_badarg!(data)

  defp bytes_badarg!(data),
    do: raise(ArgumentError, "Tether.bytes/1 takes a binary or iodata, got: " <> Kernel.inspect(data, limit: 5))

  @doc """
  The newest frame in a tether shared-memory region file (written by Python).
  Reads exactly that frame, or returns `{:error, reason}`; never raises.

  A region Python wrote:

  ```python
  region = tether.shm.Region.create(1 << 20)
  tether.dump_into(numpy.arange(4.0), region)  # region.path: "/dev/shm/tether-..."
  ```

  ```elixir
  {:ok, frame} = Tether.read_region(path)
  {:ok, %{type: {:f, 64}, shape: {4}}} = Tether.decode(frame)
  ```

      iex> Tether.read_region("/dev/shm/no-such-tether-region")
      {:error, :enoent}
  """
  @spec read_region(Path.t()) :: {:ok, binary()} | {:error, term()}
  def read_region(path), do: :tether.read_region(path)

  # :tether's {badarg, Reason} errors, as ArgumentErrors an Elixir caller can read.
  defp badarg!({:tensor_size, type, shape, expected, got}),
    do:
      raise(ArgumentError,
        "a #{Kernel.inspect(type)} tensor of shape #{Kernel.inspect(shape)} needs #{expected} bytes of data, got #{got}")

  defp badarg!({:raw_needs_binary, term}),
    do: raise(ArgumentError, "format: :raw encodes a binary, got: #{Kernel.inspect(term, limit: 5)}; use format: :etf for other terms")

  defp badarg!(reason) when elem(reason, 0) in [:type_failed, :type_downgrade],
    do: raise(ArgumentError, Tether.Type.format_error(reason))

  defp badarg!(other), do: raise(ArgumentError, "argument error: #{Kernel.inspect(other)}")
end
