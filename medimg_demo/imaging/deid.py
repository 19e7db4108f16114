"""De-identified copy of a DICOM file (after PS3.15 Annex E, Basic Application Confidentiality Profile).

Person names, dates and times are emptied, identifying attributes removed, instance UIDs replaced
by new ones (consistently within the file), private and overlay groups removed, and the action is
recorded in Patient Identity Removed (0012,0062) and De-identification Method (0012,0063/0064).
Pixel data is kept as it is: burned-in text cannot be removed here, so a file that declares or may
carry it is flagged by the reader.
"""

from __future__ import annotations

import io as _io
import warnings

from ..errors import InputError

METHOD = "PS3.15 Annex E Basic Profile; medimg_demo"  # LO: at most 64 characters

#: Attributes removed outright (X in the profile) wherever they appear.
REMOVE = {
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence",
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "MilitaryRank", "BranchOfService",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments", "PatientAge", "PatientSize",
    "PatientWeight", "MedicalRecordLocator", "ResponsiblePerson", "ResponsibleOrganization", "CountryOfResidence",
    "RegionOfResidence", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference", "MedicalAlerts",
    "Allergies", "PregnancyStatus", "SmokingStatus", "LastMenstrualDate", "PatientState", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence", "OperatorsName",
    "OperatorIdentificationSequence", "RequestingPhysician", "RequestingService", "StationName", "DeviceSerialNumber",
    "ProtocolName", "StudyDescription", "SeriesDescription", "ImageComments", "RequestAttributesSequence",
    "AdmittingDiagnosesDescription", "AdmissionID", "IssuerOfAdmissionID", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "ScheduledProcedureStepID", "RequestedProcedureID", "CurrentPatientLocation",
    "PatientInstitutionResidence", "ReferencedPatientSequence", "ReferencedStudySequence", "DerivationDescription",
    "SourceImageSequence", "ReferencedImageSequence", "IssuerOfPatientID", "TextComments", "TextString",
    "InterpretationText", "ClinicalTrialSponsorName", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "PersonName", "PersonAddress", "PersonTelephoneNumbers", "VerifyingObserverName", "ContentCreatorName",
    "AcquisitionDeviceProcessingDescription", "DetectorID", "PlateID", "CassetteID", "GantryID", "GeneratorID",
}
#: Attributes kept but emptied (Z): type 2 attributes an image must still carry.
EMPTY = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName", "StudyID"}
#: Value representations emptied wherever they appear: person names, dates, times.
EMPTY_VRS = {"PN", "DA", "DT", "TM"}


def deidentify(data: bytes) -> bytes:
    """Bytes of a DICOM file -> bytes of a de-identified copy (pixel data unchanged)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.errors import InvalidDicomError
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_io.BytesIO(data), force=True)
            _ = ds.keys()
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError) as exc:
        raise InputError("Only a readable DICOM file can be de-identified.") from exc

    uid_map: dict[str, str] = {}

    def new_uid(old: str) -> str:
        if old.startswith("1.2.840.10008."):  # standard class/transfer-syntax UIDs identify no one
            return old
        if old not in uid_map:
            uid_map[old] = generate_uid()
        return uid_map[old]

    def scrub(dataset: Dataset, elem) -> None:  # noqa: ANN001
        kw = elem.keyword
        if elem.tag.is_private or (elem.tag.group & 0xFF00) == 0x6000:  # private and overlay groups
            del dataset[elem.tag]
        elif kw in REMOVE:
            del dataset[elem.tag]
        elif kw in EMPTY or elem.VR in EMPTY_VRS:
            elem.value = ""
        elif elem.VR == "UI" and elem.value:
            if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue":
                elem.value = [new_uid(str(v)) for v in elem.value]
            else:
                elem.value = new_uid(str(elem.value))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.remove_private_tags()
        ds.walk(scrub)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or new_uid(str(meta.MediaStorageSOPInstanceUID))
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        out = _io.BytesIO()
        ds.save_as(out, enforce_file_format=meta is not None and "TransferSyntaxUID" in meta)
    return out.getvalue()
