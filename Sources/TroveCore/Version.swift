/// The release, shown by `trove --version` and sent as the protocol agent.
public enum TroveVersion {
    public static let string = "0.2.0"
}
