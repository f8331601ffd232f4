#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a gRPC message carries its tensors: in typed fields (`contents`, TF Serving's
/// `float_val`...) or packed little-endian bytes (`raw_input_contents`, `tensor_content`).
/// An answer is written the way its request was (SPEC §13: "answers mirror the request's choice").
public enum GRPCTensorEncoding: Sendable, Hashable {
    case typed
    case raw
}

/// Why the elements of one tensor cannot be read or written; the caller turns the reason into a
/// `ModelError` (requests) or an `UpstreamResponseError` (responses).
struct TensorDataError: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Element conversions shared by the OIP v2 and TF Serving gRPC codecs: packed little-endian
/// bytes and typed values to and from the `Double`s of a `NumericTensor`.
///
/// 64-bit integers travel as `Double`s, as in the JSON codecs, so magnitudes above 2^53 lose
/// their low bits; a value that is not a whole number in range cannot be written as an integer.
enum TensorData {
    /// Bytes per element in packed form; nil for `BYTES`, whose elements have their own lengths.
    static func elementSize(_ datatype: OIPDatatype) -> Int? {
        switch datatype {
        case .bool, .uint8, .int8: 1
        case .uint16, .int16, .fp16: 2
        case .uint32, .int32, .fp32: 4
        case .uint64, .int64, .fp64: 8
        case .bytes: nil
        }
    }

    /// The product of `shape`, or nil when a dimension is negative; saturates at `Int.max`.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            count = overflow ? Int.max : product
        }
        return count
    }

    // MARK: Packed bytes

    /// Reads `count` packed little-endian elements; the byte count must be exactly `count` elements.
    static func unpack(
        _ bytes: Data,
        datatype: OIPDatatype,
        count: Int,
        label: String,
        shape: [Int],
        field: String
    ) throws(TensorDataError) -> [Double] {
        guard let size = elementSize(datatype) else {
            throw TensorDataError("\(label): datatype BYTES is not supported; expected a numeric datatype such as FP64")
        }
        let (needed, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, bytes.count == needed else {
            throw TensorDataError(
                "\(label): shape \(shape) has \(count) elements of \(size) bytes (\(datatype.rawValue)),"
                    + " \(overflow ? "too many" : String(needed)) bytes, but \(field) has \(bytes.count) bytes"
            )
        }
        return bytes.withUnsafeBytes { raw in
            (0..<count).map { index in
                let offset = index * size
                switch datatype {
                case .bool: return raw[offset] != 0 ? 1 : 0
                case .uint8: return Double(raw[offset])
                case .int8: return Double(Int8(bitPattern: raw[offset]))
                case .uint16:
                    return Double(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
                case .int16:
                    return Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
                case .fp16:
                    return halfToDouble(
                        UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                    )
                case .uint32:
                    return Double(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                case .int32:
                    return Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                case .fp32:
                    let bits = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                    return Double(Float(bitPattern: bits))
                case .uint64:
                    return Double(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
                case .int64:
                    return Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
                case .fp64:
                    let bits = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                    return Double(bitPattern: bits)
                case .bytes: return 0  // unreachable: refused above
                }
            }
        }
    }

    /// Packs values little-endian; each must be representable in `datatype`.
    static func pack(_ values: [Double], datatype: OIPDatatype, label: String) throws(TensorDataError) -> Data {
        guard let size = elementSize(datatype) else {
            throw TensorDataError("\(label): BYTES tensors cannot be written from numbers")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(values.count * size)
        func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        for (index, value) in values.enumerated() {
            switch datatype {
            case .bool: append(UInt8(try boolean(value, index: index, label: label) ? 1 : 0))
            case .uint8: append(try integer(value, as: UInt8.self, datatype: datatype, index: index, label: label))
            case .int8: append(try integer(value, as: Int8.self, datatype: datatype, index: index, label: label))
            case .uint16: append(try integer(value, as: UInt16.self, datatype: datatype, index: index, label: label))
            case .int16: append(try integer(value, as: Int16.self, datatype: datatype, index: index, label: label))
            case .uint32: append(try integer(value, as: UInt32.self, datatype: datatype, index: index, label: label))
            case .int32: append(try integer(value, as: Int32.self, datatype: datatype, index: index, label: label))
            case .uint64: append(try integer(value, as: UInt64.self, datatype: datatype, index: index, label: label))
            case .int64: append(try integer(value, as: Int64.self, datatype: datatype, index: index, label: label))
            case .fp16: append(doubleToHalf(value))
            case .fp32: append(Float(value).bitPattern)
            case .fp64: append(value.bitPattern)
            case .bytes: break
            }
        }
        return Data(bytes)
    }

    // MARK: Typed values

    /// An integer element, checked as the JSON codec checks integer data.
    static func integer<T: FixedWidthInteger>(
        _ value: Double,
        as type: T.Type,
        datatype: OIPDatatype,
        index: Int,
        label: String
    ) throws(TensorDataError) -> T {
        guard let exact = T(exactly: value) else {
            throw TensorDataError(
                "\(label): element \(index) is \(JSON.number(value)); expected a whole number in the"
                    + " \(datatype.rawValue) range"
            )
        }
        return exact
    }

    /// A boolean element: 1 or 0.
    static func boolean(_ value: Double, index: Int, label: String) throws(TensorDataError) -> Bool {
        guard value == 0 || value == 1 else {
            throw TensorDataError(
                "\(label): element \(index) is \(JSON.number(value)); expected true or false for BOOL"
            )
        }
        return value == 1
    }

    /// Checks typed integer values against the datatype's range (an `int_contents` entry of an
    /// INT8 tensor must fit in 8 bits).
    static func checkRange(_ values: [Double], datatype: OIPDatatype, label: String) throws(TensorDataError) {
        guard let range = datatype.integerRange else { return }
        for (index, value) in values.enumerated() where !range.contains(value) {
            throw TensorDataError(
                "\(label): element \(index) is \(JSON.number(value)); expected a whole number in the"
                    + " \(datatype.rawValue) range"
            )
        }
    }

    /// The number a REST server prints for an element: FP32 (and FP16) fractions as the shortest
    /// decimal that reads back as the same float, as `OIPCodec` writes them, so renderings compare
    /// equal to the REST twin's; NaN is null.
    static func restNumber(_ value: Double, datatype: OIPDatatype) -> JSON {
        if value.isNaN { return .null }
        if datatype == .bool { return .bool(value != 0) }
        if datatype == .fp32 || datatype == .fp16 {
            // The rule of `OIPCodec.writeElement`: fractions as the float's shortest text.
            let single = Float(value)
            if single.isFinite, single.rounded(.towardZero) != single, let shortest = Double(single.description) {
                return .number(shortest)
            }
        }
        return .number(value)
    }

    // MARK: BYTES

    /// Splits Triton's raw BYTES form: each element a 4-byte little-endian length, then its bytes.
    static func unpackBytes(_ bytes: Data, count: Int, label: String, field: String) throws(TensorDataError) -> [Data] {
        var elements: [Data] = []
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            guard bytes.endIndex - offset >= 4 else {
                throw TensorDataError("\(label): \(field) ends inside the length of BYTES element \(elements.count)")
            }
            var length = 0
            for k in 0..<4 { length |= Int(bytes[offset + k]) << (8 * k) }
            offset += 4
            guard bytes.endIndex - offset >= length else {
                throw TensorDataError(
                    "\(label): BYTES element \(elements.count) says \(length) bytes but \(field) has"
                        + " \(bytes.endIndex - offset) left"
                )
            }
            elements.append(bytes[offset..<offset + length])
            offset += length
        }
        guard elements.count == count else {
            throw TensorDataError("\(label): \(field) holds \(elements.count) BYTES elements; its shape needs \(count)")
        }
        return elements
    }

    /// A BYTES element as a REST server renders it: a string (invalid UTF-8 is replaced).
    static func restString(_ element: Data) -> JSON {
        .string(String(decoding: element, as: UTF8.self))
    }

    // MARK: Half precision

    /// IEEE 754 binary16 bits to a Double (no `Float16`: it is unavailable on Intel macOS).
    static func halfToDouble(_ bits: UInt16) -> Double {
        let sign: Double = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int((bits >> 10) & 0x1F)
        let fraction = Double(bits & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * 0x1p-24
        case 0x1F: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * Double(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }

    /// A Double to binary16 bits, rounding to nearest even; beyond the range is infinity.
    static func doubleToHalf(_ value: Double) -> UInt16 {
        if value.isNaN { return 0x7E00 }
        let sign: UInt16 = value.sign == .minus ? 0x8000 : 0
        let magnitude = abs(value)
        if magnitude >= 65520 { return sign | 0x7C00 }
        if magnitude < 0x1p-14 {
            // Subnormal: a multiple of 2^-24.
            return sign | UInt16((magnitude * 0x1p24).rounded(.toNearestOrEven))
        }
        let exponent = Int(magnitude.exponent)
        let fraction = (magnitude / Double(sign: .plus, exponent: exponent, significand: 1) - 1) * 1024
        var result = UInt16(exponent + 15) << 10
        let rounded = fraction.rounded(.toNearestOrEven)
        // A fraction that rounds up to 1024 carries into the exponent, which the addition does.
        result &+= UInt16(rounded)
        return sign | result
    }
}
